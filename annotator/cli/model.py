"""`annotator model`: list the 15 networks, train one, evaluate a checkpoint, a Table 11 style table."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table
from sqlalchemy import select

from annotator.cli.common import console, handle_errors, require_workspace, settings_from, workspace_session
from annotator.errors import AnnotatorError, ModelError
from annotator.evaluation.metrics import segmentation_scores
from annotator.imaging.io import read_image, read_mask
from annotator.ingest.importer import list_items
from annotator.ingest.layouts import ImportItem
from annotator.model_registry import prune as prune_versions
from annotator.model_registry import publish, resolve_checkpoint
from annotator.segmentation.presets import get_preset
from annotator.segmentation.registry import (
    SPECS,
    THESIS_PARAMS_M,
    get_spec,
    list_specs,
    normalize_name,
    stored_parameters,
)
from db.engine import session_scope
from db.models import Image, Mask, SplitMember
from workflows.stage1 import (
    SEED_DATASETS,
    SPLIT_NAME,
    load_pairs,
    plan_split,
    seed_lung_masks,
    store_split,
)

app = typer.Typer(no_args_is_help=True, help="Segmentation networks: list, train, evaluate.")


def _set_threads(settings) -> None:
    from annotator.segmentation.runtime import configure_threads

    configure_threads(settings.torch_threads)


@app.command("list")
@handle_errors
def list_models(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The 15 architecture x encoder networks with their trainable parameters (1 gray channel in, 2 out)."""

    rows = []
    for spec in list_specs():  # stored counts: no network is built, torch is not imported
        rows.append({"name": spec.name, "network": spec.display_name,
                     "params_m": round(stored_parameters(spec) / 1e6, 2), "thesis_params_m": THESIS_PARAMS_M.get(spec.name)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Segmentation networks (trainable parameters)")
    for col in ("name", "network", "params (M)", "thesis (M)"):
        table.add_column(col, justify="right" if "M" in col else "left")
    for r in rows:
        table.add_row(r["name"], r["network"], f"{r['params_m']:.2f}",
                      f"{r['thesis_params_m']:.2f}" if r["thesis_params_m"] else "")
    console.print(table)


@app.command()
@handle_errors
def train(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="network, e.g. unet-resnet18 (see `annotator model list`)")],
    preset: Annotated[str, typer.Option(help="quick (CPU) | paper (the thesis' setting) | tiny")] = "quick",
    dataset: Annotated[list[str] | None, typer.Option(help="train on these datasets only (repeatable)")] = None,
    weights: Annotated[Path | None, typer.Option(help="a local pretrained weights file")] = None,
    force: Annotated[bool, typer.Option(help="start afresh instead of resuming")] = False,
) -> None:
    """Train one network on the workspace's current lung masks (fixed train/val split) and register it."""
    from annotator.segmentation.train import train_model

    settings = settings_from(ctx)
    url = require_workspace(settings)
    model_spec, config = get_spec(spec), get_preset(preset)
    _set_threads(settings)
    with session_scope(url) as session:
        query = (select(Image, Mask).join(Mask, Mask.image_id == Image.id)
                 .where(Mask.kind == "lung", Mask.origin != "model").order_by(Image.id, Mask.version))
        newest: dict[int, tuple] = {}
        for image, mask in session.execute(query).all():
            if not dataset or (image.dataset or "").lower() in {d.lower() for d in dataset}:
                newest[image.id] = (image, mask)
        rows = list(newest.values())
        if not rows:
            raise AnnotatorError("no lung masks to train on in this workspace" + (f" for {dataset}" if dataset else ""))
        splits, new_split_ids = plan_split(session, [i for i, _ in rows])  # stored after training: no lock
        train_rows = [r for r in rows if splits[r[0].id] == "train"]
        val_rows = [r for r in rows if splits[r[0].id] == "val"]
        snapshot = {"datasets": dataset or "all", "train_image_ids": [i.id for i, _ in train_rows],
                    "val_image_ids": [i.id for i, _ in val_rows], "mask_ids": [m.id for _, m in train_rows + val_rows]}
        out_dir = settings.models_path / "runs" / f"{model_spec.name}-{config.name}"
        result = train_model(model_spec, config, load_pairs(settings, train_rows), load_pairs(settings, val_rows),
                             out_dir, progress=True, snapshot=snapshot, weights_path=weights, resume=not force,
                             device=settings.device)
        store_split(session, splits, new_split_ids)
        publish(session, settings, result, spec=model_spec.name, preset=config.name, snapshot=snapshot, stage="manual")
    console.print(f"registered {result.model_version}: val DSC {result.metrics['val_dsc']:.4f} "
                  f"({result.metrics['epochs']} epochs, {result.metrics['train_s']:.0f} s); curves: {result.curves_path}")


def _external_pairs(path: Path, layout: str, datasets: list[str] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for item in list_items(path, layout):
        if not isinstance(item, ImportItem) or item.lung_mask_path is None:
            continue
        if datasets and (item.dataset or "").lower() not in {d.lower() for d in datasets}:
            continue
        image = read_image(item.image_path)
        mask = read_mask(item.lung_mask_path, image.shape)
        for part in item.lung_mask_parts:
            mask = mask | read_mask(part, image.shape)
        pairs.append((image, mask))
    return pairs


def _workspace_pairs(settings, session, split: str, datasets: list[str] | None):
    rows = seed_lung_masks(session, datasets or SEED_DATASETS)
    members = dict(session.execute(select(SplitMember.image_id, SplitMember.split)
                                   .where(SplitMember.name == SPLIT_NAME)).all())
    chosen = [r for r in rows if split == "all" or members.get(r[0].id) == split]
    return load_pairs(settings, chosen)


@app.command()
@handle_errors
def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="'working', a model_version, or a checkpoint file")] = "working",
    data: Annotated[Path | None, typer.Option(help="an external collection (default: the workspace)")] = None,
    layout: Annotated[str, typer.Option(help="layout of --data: manifest | covid-qu-ex | montgomery-shenzhen")] = "manifest",
    dataset: Annotated[list[str] | None, typer.Option(help="only these datasets (repeatable)")] = None,
    split: Annotated[str, typer.Option(help="workspace images of the stage1 split: test | val | train | all")] = "test",
    backend: Annotated[str | None, typer.Option(help="eager | bf16 | onnx (default: the setting)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print {dsc, iou, accuracy, n} as JSON")] = False,
) -> None:
    """Table 5 row of a network: pixel accuracy, IoU and DSC with 95% intervals on a collection."""
    from annotator.segmentation.predict import Predictor

    settings = settings_from(ctx)
    _set_threads(settings)
    has_workspace = settings.db_url is not None or (settings.workspace_path / "annotator.db").exists()
    if has_workspace:
        url = require_workspace(settings)
        with session_scope(url) as session:
            ckpt_path = resolve_checkpoint(session, settings, model)
            pairs = None if data else _workspace_pairs(settings, session, split, dataset)
    else:
        ckpt_path = resolve_checkpoint(None, settings, model)
        pairs = None
        if data is None:
            raise AnnotatorError("no workspace here: pass --data PATH --layout LAYOUT (or --workspace DIR)")
    if data is not None:
        pairs = _external_pairs(data, layout, dataset)
    if not pairs:
        raise AnnotatorError("no images with a lung mask to evaluate on")
    predictor = Predictor.from_checkpoint(ckpt_path, backend=backend or settings.predict_backend,
                                          device=settings.device, on_refuse="eager")
    scores = segmentation_scores(predictor.predict([i for i, _ in pairs]), [m for _, m in pairs])
    if as_json:
        typer.echo(json.dumps({"dsc": scores["dsc"], "iou": scores["iou"], "accuracy": scores["accuracy"],
                               "n": scores["n"], "model_version": predictor.model_version,
                               "backend": predictor.backend, "ci95": {k: scores[f"{k}_ci"] for k in
                                                                      ("dsc", "iou", "accuracy")}}))
        return
    table = Table(title=f"{predictor.model_version} on {data or 'the workspace'} (n = {scores['n']}, "
                        f"{predictor.backend})")
    for col in ("network", "accuracy", "IoU", "DSC"):
        table.add_column(col)
    table.add_row(predictor.spec.display_name,
                  *(f"{scores[k]:.4f} ± {scores[k + '_ci']:.4f}" for k in ("accuracy", "iou", "dsc")))
    console.print(table)


@app.command()
@handle_errors
def prune(
    ctx: typer.Context,
    keep: Annotated[int, typer.Option(help="keep this many newest versions of each task, whatever names them")] = 2,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go; delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Delete the files of old network versions that no decision, task, round, mask or report names (the
    working one and the newest --keep stay); their rows stay, marked pruned."""
    with workspace_session(ctx) as (settings, session):
        result = prune_versions(session, settings, keep=keep, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(result))
        return
    verb = "would prune" if dry_run else "pruned"
    console.print(f"{verb} {len(result['pruned'])} versions ({result['freed_mb']} MB); kept {result['kept']}")
    for version in result["pruned"]:
        console.print(f"  {version}")


@app.command("table")
@handle_errors
def table_cmd(
    ctx: typer.Context,
    model: Annotated[list[str], typer.Option("--model", help="'working', a model_version, a checkpoint, or a "
                                                            "spec name (untrained, for timing) (repeatable)")],
    backend: Annotated[list[str] | None, typer.Option(help="eager | bf16 | onnx (repeatable)")] = None,
    size_px: Annotated[int, typer.Option(help="image side for the timing")] = 256,
    repeats: Annotated[int, typer.Option(help="timed predictions per backend")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON")] = False,
) -> None:
    """Table 11 style: trainable parameters and ms per image (model only, batch 1) per backend."""

    settings = settings_from(ctx)
    _set_threads(settings)
    backends = backend or ["eager", settings.predict_backend]
    backends = list(dict.fromkeys(backends))
    has_workspace = (settings.workspace_path / "annotator.db").exists() or settings.db_url is not None
    rows = []
    for ref in model:
        if normalize_name(ref) in SPECS and not Path(ref).is_file():
            import torch

            from annotator.segmentation.checkpoint import save_checkpoint
            from annotator.segmentation.factory import build_model

            spec = SPECS[normalize_name(ref)].with_input_size(size_px)
            torch.manual_seed(0)
            with tempfile.TemporaryDirectory(prefix="annotator-table-") as tmp:  # untrained: gone after timing
                path = Path(tmp) / f"{spec.name}.pt"
                save_checkpoint(path, spec, build_model(spec).state_dict())
                rows.append(_timing_row(ref, path, backends, size_px, repeats))
            continue
        if has_workspace:
            with session_scope(require_workspace(settings)) as session:
                path = resolve_checkpoint(session, settings, ref)
        else:
            path = resolve_checkpoint(None, settings, ref)
        rows.append(_timing_row(ref, path, backends, size_px, repeats))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Parameters and ms per image (model only, batch 1; the machine may be shared)")
    for col in ("network", "model_version", "input px", "params (M)", *(f"{b} ms" for b in backends)):
        table.add_column(col)
    for r in rows:
        table.add_row(r.get("network", "?"), r.get("model_version", r["model"]), str(r.get("input_px", "")),
                      f"{r.get('params_m', 0):.2f}", *(str(r.get(f"{b}_ms") or "refused") for b in backends))
    console.print(table)


def _timing_row(ref: str, path: Path, backends: list[str], size_px: int, repeats: int) -> dict:
    """Parameters and ms per image of one checkpoint, per backend (a refused backend gets its reason)."""
    from annotator.segmentation.factory import count_parameters
    from annotator.segmentation.predict import Predictor

    image = np.random.default_rng(0).integers(0, 256, (size_px, size_px), dtype=np.uint8)
    row: dict = {"model": ref}
    for name in backends:
        try:
            predictor = Predictor.from_checkpoint(path, backend=name, verify_images=[image] if name != "eager"
                                                  else None, min_dice=0.0)
        except ModelError as exc:
            row[f"{name}_ms"] = None
            row[f"{name}_error"] = str(exc)
            continue
        row["model_version"] = predictor.model_version
        row["network"] = predictor.spec.display_name
        row["params_m"] = round(count_parameters(predictor.model) / 1e6, 2)
        batch = np.zeros((1, predictor.spec.input_size_px, predictor.spec.input_size_px), np.float32)
        predictor.forward_batch(batch)
        start = time.perf_counter()
        for _ in range(repeats):
            predictor.forward_batch(batch)
        row[f"{name}_ms"] = round((time.perf_counter() - start) * 1000 / repeats, 1)
        row["input_px"] = predictor.spec.input_size_px
    return row
