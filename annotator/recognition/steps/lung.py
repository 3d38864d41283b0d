"""Step: the lung network, trained on the training split's lung masks and scored on the test split (Table 5).
Its predicted masks feed every later step (cascaded infection input, segmented classifier input)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.errors import TrainingError
from annotator.evaluation.crossval import grouped_holdout
from annotator.evaluation.metrics import segmentation_scores
from annotator.evaluation.tables import SEG_METRICS, Table, percent
from annotator.imaging.io import read_mask
from annotator.progress import progress_bar
from annotator.recognition.dataset import Sample
from annotator.recognition.steps.context import RunContext, digest
from annotator.segmentation.predict import Predictor
from annotator.segmentation.registry import get_spec
from annotator.segmentation.train import train_model

BATCH = 32


@dataclass
class LungNetwork:
    """The trained lung network and the masks it predicted so far (post-processed), by sample key."""

    predictor: Predictor
    pixels: Callable[[Sample], np.ndarray]
    progress: bool = True
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def predict(self, items: Sequence[Sample]) -> None:
        todo = [s for s in items if s.key not in self.masks]
        with progress_bar("predicting lungs", total=len(todo), enabled=self.progress and len(todo) > BATCH,
                          unit="images") as bar:
            for start in range(0, len(todo), BATCH):
                chunk = todo[start:start + BATCH]
                for s, m in zip(chunk, self.predictor.predict([self.pixels(s) for s in chunk]), strict=True):
                    self.masks[s.key] = m
                bar.advance(len(chunk))

    def mask(self, s: Sample) -> np.ndarray:
        self.predict([s])
        return self.masks[s.key]


def reference_lung(ctx: RunContext, s: Sample) -> np.ndarray:
    return read_mask(s.lung_mask_path, ctx.pixels(s).shape)


def train_lung(ctx: RunContext) -> LungNetwork:
    config = ctx.config
    with_mask = [s for s in ctx.samples if s.lung_mask_path is not None]
    train = [s for s in with_mask if not ctx.is_test(s)]
    test = [s for s in with_mask if ctx.is_test(s)]
    if len(train) < 2:
        raise TrainingError(f"only {len(train)} training images have a lung mask; import lung masks first")
    classes = sorted({s.cls or "" for s in train})
    val_idx = set(grouped_holdout([classes.index(s.cls or "") for s in train], [s.group for s in train], 0.1,
                                  seed=config.seed).tolist()) if len({s.group for s in train}) >= 10 else set()
    fit = [s for i, s in enumerate(train) if i not in val_idx] or train
    val = [s for i, s in enumerate(train) if i in val_idx] or train
    cap = config.max_lung_train_images
    if cap is not None and len(fit) > cap:  # every k-th image of the class-sorted list: stratified, fixed
        ordered = sorted(fit, key=lambda s: (s.cls or "", s.key))
        fit = [ordered[int(i * len(ordered) / cap)] for i in range(cap)]
        val = val[: max(2, cap // 8)]
        ctx.note(f"Lung network: trained on a class-stratified subset of {len(fit)} training images "
                 f"(max_lung_train_images={cap}, a CPU budget).")
    tconfig = ctx.segmentation_config(config.lung_budget_s)
    spec = get_spec(config.lung_spec, tconfig.input_size_px)

    def pairs(items):
        return [(ctx.pixels(s), reference_lung(ctx, s)) for s in items]

    ctx.echo(f"lung network {spec.name}: {len(fit)} training, {len(val)} validation, {len(test)} test images")
    res = train_model(spec, tconfig, pairs(fit), pairs(val), ctx.work_path / "lung", progress=ctx.progress,
                      snapshot={"purpose": "recognition-lung", "test_split": digest(sorted(ctx.test_keys))},
                      device=ctx.device)
    lungs = LungNetwork(Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=ctx.device), ctx.pixels,
                        ctx.progress)
    report = ctx.report
    report.manifest["lung"] = str(res.checkpoint_path.relative_to(ctx.work_path))
    report.register("lung", spec.name, res.checkpoint_path, res.model_version, res.metrics)
    if res.curves_path and Path(res.curves_path).is_file():
        dest = report.report_path / "lung_training_curves.png"
        shutil.copyfile(res.curves_path, dest)
        report.plot(dest)
    table = Table("Lung segmentation on the test split (Table 5)", ["network", "scoring", "n", *(f"{m} %" for m in SEG_METRICS)])
    if test:
        predicted = lungs.predictor.predict([ctx.pixels(s) for s in test])
        scores = segmentation_scores(predicted, [reference_lung(ctx, s) for s in test])
        n = scores["n"]
        table.add(spec.name, "per-image mean", n, *(percent(scores[m], scores[f"{m}_ci"], n) for m in SEG_METRICS))
        pooled = scores["pooled"]
        table.add(spec.name, "pooled pixels", n, *(percent(pooled[m], pooled[f"{m}_ci"], n) for m in SEG_METRICS))
        report.results["lung"] = scores
    else:
        table.add(spec.name, "per-image mean", 0, *["too few to measure"] * len(SEG_METRICS))
    table.note = f"n = test images with a reference lung mask; trained on {len(fit)}, validated on {len(val)}."
    report.table("lung", table)
    return lungs
