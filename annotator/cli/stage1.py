"""`annotator stage1`: train the three Stage I U-Net variants on the seed masks; pick the working one."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from annotator.cli.common import console, handle_errors, require_workspace, settings_from
from db.engine import session_scope
from workflows.stage1 import run_stage1

app = typer.Typer(no_args_is_help=True, help="Stage I: train three U-Net variants on the seed masks.")


@app.command()
@handle_errors
def run(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="quick (two CPU cores, <= 30 min) | paper (the thesis' setting)")] = "quick",
    force: Annotated[bool, typer.Option(help="train again although Stage I is done")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Train U-Net-ResNet18, U-Net-DenseNet121 and U-Net-ResNet50 on the Montgomery/Shenzhen seed masks,
    register all three and mark the best by validation DSC as the working network."""
    settings = settings_from(ctx)
    url = require_workspace(settings)
    from annotator.segmentation.runtime import configure_threads

    configure_threads(settings.torch_threads)
    with session_scope(url) as session:
        result = run_stage1(session, settings, preset=preset, force=force, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    if result.skipped:
        console.print("Stage I is already done (use --force to train again):")
    else:
        console.print(f"Stage I ({result.preset}): {result.counts['train']} train, {result.counts['val']} val, "
                      f"{result.counts['test']} test images; {result.elapsed_s / 60:.1f} min")
    table = Table(title="Stage I: U-Net variants (DSC on held-out Montgomery/Shenzhen images)")
    for col in ("network", "model_version", "epochs", "train s", "val DSC", "test DSC (95%)", "test IoU",
                "test accuracy", "working"):
        table.add_column(col)
    for v in result.variants:
        test = v.metrics.get("test") or {}
        table.add_row(v.spec, v.model_version, str(v.metrics.get("epochs", "")), f"{v.metrics.get('train_s', 0):.0f}",
                      f"{v.metrics.get('val_dsc', 0):.4f}",
                      f"{test.get('dsc', 0):.4f} ± {test.get('dsc_ci', 0):.4f}", f"{test.get('iou', 0):.4f}",
                      f"{test.get('accuracy', 0):.4f}", "yes" if v.is_working else "")
    console.print(table)
    working = result.working
    if working:
        console.print(f"working network: {working.model_version} ({working.checkpoint_path})")
    png = write_comparison(result, settings.reports_path / "stage1_comparison.png")
    console.print(f"comparison: {png}")


def write_comparison(result, path):
    """Validation and test DSC of each variant as a bar chart (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v.spec for v in result.variants]
    val = [v.metrics.get("val_dsc", 0) for v in result.variants]
    test = [v.metrics.get("test_dsc", 0) for v in result.variants]
    ci = [(v.metrics.get("test") or {}).get("dsc_ci", 0) for v in result.variants]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([x - 0.2 for x in xs], val, 0.4, label="validation DSC")
    ax.bar([x + 0.2 for x in xs], test, 0.4, yerr=ci, capsize=3, label="test DSC (95%)")
    ax.set_xticks(list(xs), [n + (" (working)" if v.is_working else "") for n, v in zip(names, result.variants)])
    ax.set_ylim(min(val + test + [0.9]) - 0.02, 1.0)
    ax.legend(loc="lower right")
    ax.set_title(f"Stage I ({result.preset})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
