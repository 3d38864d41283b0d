"""`annotator train-pipeline` and `annotator predict`: the recognition pipeline's root commands.

Both import torch only inside the command (through the training engine and the loaded networks), so the
CLI starts without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from annotator.cli.common import console, err_console, handle_errors, require_workspace, settings_from
from annotator.imaging.io import read_image
from annotator.ingest.layouts import get_layout
from annotator.progress import progress_bar, track
from annotator.recognition.config import load_network_lists, load_pipeline_config
from annotator.recognition.external import evaluate_collection
from annotator.recognition.predict import CURRENT_NAME, RecognitionPredictor
from annotator.recognition.report import write_report
from db.engine import session_scope


def _set_threads(settings) -> None:
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


def train_pipeline_command(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option("--preset", help="quick (2 CPU cores, <= 40 min on the sample) | paper | tiny")] = "quick",
    config_file: Annotated[Path | None, typer.Option("--config", help="pipeline TOML overriding the preset")] = None,
    networks: Annotated[Path | None, typer.Option("--networks", help="TOML with lung/infection/classifiers lists "
                                                  "(and stage1) replacing the preset's networks")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="report folder (default: <workspace>/reports/recognition-<preset>)")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
) -> None:
    """Train the lung, infection and classification networks; evaluate; write the report folder."""
    settings = settings_from(ctx)
    config = load_pipeline_config(preset, config_file, **(load_network_lists(networks) if networks else {}))
    url = require_workspace(settings)
    _set_threads(settings)
    from annotator.recognition.pipeline import train_pipeline

    with session_scope(url) as session:
        result = train_pipeline(settings, session, config, report, progress=not no_progress,
                                echo=lambda m: console.print(m, highlight=False))
    console.print(f"report: {result.report_dir} ({len(result.tables)} tables, {len(result.plots)} plots)")
    console.print(f"pipeline: {result.manifest_path}")
    for name, fig in result.headline.items():
        console.print(f"  {name}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fig.items()),
                      highlight=False)
    console.print(f"wall time {result.seconds / 60:.1f} min")


def predict_command(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="CXR files (PNG, JPEG, DICOM...)")],
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="write a one-page PNG report per image here")] = None,
    pipeline: Annotated[Path | None, typer.Option("--pipeline", help="a pipeline.json (default: the newest trained)")] = None,
    no_saliency: Annotated[bool, typer.Option("--no-saliency", help="skip Score-CAM")] = False,
) -> None:
    """Lung and infection masks, infected share per lung, COVID-19 yes/no, class probabilities, Score-CAM."""
    settings = settings_from(ctx)
    manifest = pipeline or settings.models_path / "recognition" / CURRENT_NAME
    pixels = [(path, read_image(path)) for path in images]  # a corrupt image fails here, before loading models
    _set_threads(settings)
    predictor = RecognitionPredictor.from_manifest(manifest, backend=settings.predict_backend, device=settings.device)
    results = []
    try:
        for path, image in track(pixels, "predicting", enabled=len(pixels) > 1, unit="images"):
            analysis = predictor.analyse(image, name=str(path), saliency=not no_saliency or report is not None)
            data = analysis.to_dict()
            if report is not None:
                data["report_png"] = str(write_report(analysis, report))
            results.append(data)
    finally:
        predictor.close()
    typer.echo(json.dumps(results if len(results) > 1 else results[0], indent=2))
    if not as_json:
        for data in results:
            verdict = "POSITIVE" if data["covid19"]["detected"] else "negative"
            err_console.print(f"{data['image']}: COVID-19 {verdict}, infected {100 * data['infected_share']:.1f}% "
                              f"({data['severity']})" + (f", report {data['report_png']}" if "report_png" in data else ""),
                              highlight=False)


def evaluate_pipeline_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="the collection's folder (read in place, not imported)")],
    layout: Annotated[str, typer.Option("--layout", help="manifest | covid-qu-ex | montgomery-shenzhen | folder")] = "manifest",
    pipeline: Annotated[Path | None, typer.Option("--pipeline", help="a pipeline.json (default: the newest trained)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON")] = False,
) -> None:
    """Score a trained pipeline on any collection: lung and infection DSC, detection, classification."""
    settings = settings_from(ctx)
    reader = get_layout(layout)  # a wrong name fails here, listing the layouts
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    manifest = pipeline or settings.models_path / "recognition" / CURRENT_NAME
    _set_threads(settings)
    predictor = RecognitionPredictor.from_manifest(manifest, backend=settings.predict_backend, device=settings.device)
    items = list(reader(data))  # listing is cheap; the images are read while scoring
    try:
        with progress_bar(f"scoring {data.name}", total=len(items), unit="items") as bar:
            result = evaluate_collection(predictor, items, progress=lambda n: bar.update(completed=n))
    finally:
        predictor.close()
    result = {"pipeline": str(manifest), "data": str(data), "layout": layout, **result}
    typer.echo(json.dumps(result, indent=2))
    if not as_json:
        def fig(part: dict, key: str) -> str:
            return "n/a" if part[key] is None else f"{100 * part[key]:.2f} ± {100 * part[key + '_ci']:.2f}%"

        err_console.print(f"lung DSC {fig(result['lung'], 'dsc')} (n={result['lung']['n']}); infection DSC "
                          f"{fig(result['infection'], 'dsc')} (n={result['infection']['n']}); detection sensitivity "
                          f"{fig(result['detection'], 'sensitivity')}, specificity {fig(result['detection'], 'specificity')} "
                          f"(n={result['detection']['n']}); {len(result['problems'])} files skipped", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the recognition commands to the root app."""
    app.command("train-pipeline")(handle_errors(train_pipeline_command))
    app.command("predict")(handle_errors(predict_command))
    app.command("evaluate-pipeline")(handle_errors(evaluate_pipeline_command))
