"""`annotator train-pipeline`: train the lung networks, the infection networks (parallel and cascaded) and
the configured classifiers on a workspace's store, evaluate them, and write the report folder with the
thesis' Tables 3-12. The steps live in ``annotator.recognition.steps``, one module each; this module runs
them in order and records the trained networks in the caller's session.

Splits (every figure with its n; a class under 5 test images reads "too few to measure"):
- the test split is Stage IV's verified set (``splits`` rows named "protocol", split "test") when it exists,
  otherwise a stated patient-grouped, class-stratified hold-out of ``test_share`` of the images;
- every network of Tables 3, 5-10 trains on the training split (80/20 fit/validation) and is scored on the
  test split; the lung network that makes the segmented inputs never sees a test image;
- Study I (COVID/SARS/MERS, Table 4) is scored by 5-fold cross-validation grouped by patient, as the thesis did.

Resumable: the segmentation engine resumes its own trainings; every classifier writes its checkpoint and is
skipped on a re-run with the same settings and data. A heavy leaf: imports torch.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.device import resolve_device
from annotator.errors import TrainingError
from annotator.evaluation.crossval import stratified_group_folds
from annotator.recognition.config import CLASS_SCHEMES, PipelineConfig
from annotator.recognition.dataset import samples_from_store, select_scheme
from annotator.recognition.steps.classification import Classifiers, Inputs
from annotator.recognition.steps.context import RunContext, start_run
from annotator.recognition.steps.detection import evaluate_detection
from annotator.recognition.steps.infection import train_infection
from annotator.recognition.steps.lung import train_lung, train_stage1
from annotator.recognition.steps.quantification import evaluate_quantification
from annotator.recognition.steps.report import PendingModel, headline, json_default
from annotator.recognition.steps.saliency import draw_saliency
from annotator.recognition.steps.study1 import run_study1
from annotator.recognition.steps.study2 import run_study2
from annotator.recognition.steps.timing import device_name, measure_timing


@dataclass
class PipelineResult:
    report_dir: Path
    manifest_path: Path
    tables: dict[str, Path] = field(default_factory=dict)  # name -> markdown path
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    headline: dict = field(default_factory=dict)


def train_pipeline(settings: Settings, session: Session, config: PipelineConfig, report_dir: Path | None = None,
                   progress: bool = True, echo: Callable[[str], None] | None = None) -> PipelineResult:
    """Run every step; the caller's session boundary commits the Model rows."""
    start = time.perf_counter()
    samples = samples_from_store(session, settings)
    if not samples:
        raise TrainingError(f"the store of {settings.workspace_path} has no images; run `annotator data import PATH`")
    for scheme in config.schemes:  # fail before any training: a scheme's classes missing, too many folds
        items, labels = select_scheme(samples, CLASS_SCHEMES[scheme], scheme)
        stratified_group_folds(labels, [s.group for s in items], config.folds, config.seed)
    report_dir = report_dir or settings.reports_path / f"recognition-{config.preset}"
    report_dir.mkdir(parents=True, exist_ok=True)
    ctx = start_run(settings, config, samples, report_dir, progress, echo)
    device = resolve_device(settings.device)
    ctx.report.results["device"] = device
    ctx.note(f"Networks trained and run on {device} (setting device = {settings.device}).")
    train_stage1(ctx)
    lungs = train_lung(ctx)
    infection = train_infection(ctx, lungs)
    evaluate_detection(ctx, infection)
    evaluate_quantification(ctx, infection)
    classifiers, inputs = Classifiers(), Inputs(ctx, lungs)
    run_study1(ctx, inputs, classifiers)
    run_study2(ctx, inputs, classifiers)
    inputs.store.clear()
    draw_saliency(ctx, lungs, classifiers)
    measure_timing(ctx, infection, classifiers)
    report = ctx.report
    manifest_path = report.write_manifest(ctx.work_path)
    write_models(session, settings, config, report.models)
    seconds = time.perf_counter() - start
    ctx.note(f"Wall time of this run: {seconds / 60:.1f} min (resumed steps are not re-trained).")
    report.results.setdefault("provenance", {}).update(provenance(ctx, seconds))
    report.write_readme(config.preset)
    return PipelineResult(report_dir, manifest_path, report.tables, report.plots, report.notes, seconds,
                          headline(report.results))


def provenance(ctx: RunContext, seconds: float) -> dict:
    """What results.json needs to be traced: preset, machine, every model version (the splits' image-id
    hashes were recorded by the steps)."""
    return {
        "preset": ctx.config.preset,
        "machine": {"device": device_name(ctx.device), "platform": platform.platform(),
                    "python": sys.version.split()[0], "torch": torch.__version__},
        "wall_time_s": seconds,
        "models": [{"task": m.task, "network": m.spec, "model_version": m.version,
                    "checkpoint": str(Path(m.path).relative_to(ctx.work_path))} for m in ctx.report.models],
    }


def write_models(session: Session, settings: Settings, config: PipelineConfig, pending: Sequence[PendingModel]) -> None:
    """A Model row per trained network the run produced, through the model registry (known versions are
    skipped)."""
    from annotator.model_registry import register
    from db.models import Model

    for task, spec, path, version, metrics in pending:
        if session.scalar(select(Model.id).where(Model.model_version == version)) is not None:
            continue
        try:
            rel = str(Path(path).resolve().relative_to(settings.workspace_path))
        except ValueError:
            rel = str(path)
        register(session, model_version=version, task=task, spec=spec, preset=config.preset, checkpoint_path=rel,
                 metrics=json.loads(json.dumps(metrics, default=json_default)), snapshot={"pipeline": config.preset},
                 stage="pipeline")
