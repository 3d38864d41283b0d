"""Step: the lung networks (Table 5), each trained on the training split's lung masks (the protocol's
80/20 of it for validation) and scored on the test split; the best DSC is deployed. Its predicted masks
feed every later step (cascaded infection input, segmented classifier input), so no test image was ever
seen by the network that makes them. Also Table 3: Stage I's U-Net on the seed set (Montgomery/Shenzhen)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.errors import TrainingError
from annotator.evaluation.metrics import segmentation_scores
from annotator.evaluation.tables import SEG_METRICS, Table, percent
from annotator.imaging.io import read_mask
from annotator.progress import progress_bar
from annotator.recognition.dataset import Sample
from annotator.recognition.steps.context import RunContext, digest
from annotator.segmentation.predict import Predictor
from annotator.segmentation.registry import get_spec
from annotator.segmentation.train import TrainResult, train_model

BATCH = 32
SEED_DATASETS = ("Montgomery", "Shenzhen")


@dataclass
class LungNetwork:
    """The deployed lung network and the masks it predicted so far (post-processed), by sample key; and
    the checkpoint of every lung network the run trained (Tables 5 and 11)."""

    predictor: Predictor
    pixels: Callable[[Sample], np.ndarray]
    progress: bool = True
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)

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


def seg_columns(*prefix: str) -> list[str]:
    return [*prefix, "n", *(f"{m} %" for m in SEG_METRICS)]


def seg_cells(scores: dict) -> list:
    n = scores["n"]
    return [n, *(percent(scores[m], scores[f"{m}_ci"], n) for m in SEG_METRICS)]


def training_sets(ctx: RunContext, items: Sequence[Sample], what: str, cap: int | None) -> tuple[list[Sample], list[Sample]]:
    """Fit and validation parts of ``items``; at most ``cap`` fit images (a CPU budget, stated)."""
    fit, val = ctx.fit_validation(items)
    if cap is not None and len(fit) > cap:  # every k-th image of the class-sorted list: stratified, fixed
        ordered = sorted(fit, key=lambda s: (s.cls or "", s.key))
        fit = [ordered[int(i * len(ordered) / cap)] for i in range(cap)]
        val = val[: max(2, cap // 8)]
        ctx.note(f"{what}: trained on a class-stratified subset of {len(fit)} training images "
                 f"(a CPU budget), validated on {len(val)}.")
    return fit, val or fit


def fit_lung(ctx: RunContext, name: str, fit: Sequence[Sample], val: Sequence[Sample], out_dir: Path,
             purpose: str) -> TrainResult:
    tconfig = ctx.segmentation_config(ctx.config.lung_budget_s)
    spec = get_spec(name, tconfig.input_size_px)

    def pairs(items):
        return [(ctx.pixels(s), reference_lung(ctx, s)) for s in items]

    ctx.echo(f"{purpose} {spec.name}: {len(fit)} training, {len(val)} validation images")
    return train_model(spec, tconfig, pairs(fit), pairs(val), out_dir, progress=ctx.progress,
                       snapshot={"purpose": purpose, "test_split": digest(sorted(ctx.test_keys))},
                       device=ctx.device)


def train_lung(ctx: RunContext) -> LungNetwork:
    config, report = ctx.config, ctx.report
    with_mask = [s for s in ctx.samples if s.lung_mask_path is not None]
    train = [s for s in with_mask if not ctx.is_test(s)]
    test = [s for s in with_mask if ctx.is_test(s)]
    if len(train) < 2:
        raise TrainingError(f"only {len(train)} training images have a lung mask; import lung masks first")
    fit, val = training_sets(ctx, train, "Lung networks", config.max_lung_train_images)
    ctx.record_split("lung_fit", fit)
    ctx.record_split("lung_validation", val)
    table = Table("Lung segmentation per network on the test split (Table 5)", seg_columns("network"))
    best: tuple[float, str, TrainResult] | None = None
    checkpoints = {}
    for name in config.lung_networks:
        res = fit_lung(ctx, name, fit, val, ctx.work_path / "lung" / name, "recognition-lung")
        checkpoints[name] = res.checkpoint_path
        report.register("lung", name, res.checkpoint_path, res.model_version, res.metrics)
        if not test:
            table.add(name, 0, *["too few to measure"] * len(SEG_METRICS))
            dsc = float(res.metrics.get("val_dsc", res.metrics.get("dsc", 0.0)) or 0.0)
        else:
            predictor = Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=ctx.device)
            scores = segmentation_scores(predictor.predict([ctx.pixels(s) for s in test]),
                                         [reference_lung(ctx, s) for s in test])
            table.add(name, *seg_cells(scores))
            report.results.setdefault("lung", {})[name] = scores
            dsc = scores["dsc"]
        if best is None or dsc > best[0]:
            best = (dsc, name, res)
    _, name, res = best
    lungs = LungNetwork(Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=ctx.device), ctx.pixels,
                        ctx.progress, checkpoints=checkpoints)
    report.manifest["lung"] = str(res.checkpoint_path.relative_to(ctx.work_path))
    ctx.note(f"Deployed lung network: {name} (best test DSC of {len(config.lung_networks)}); it makes the "
             "segmented classifier inputs and never saw a test image.")
    if res.curves_path and Path(res.curves_path).is_file():
        dest = report.report_path / "lung_training_curves.png"
        shutil.copyfile(res.curves_path, dest)
        report.plot(dest)
    table.note = (f"Per-image means; n = test images with a reference lung mask; trained on {len(fit)}, "
                  f"validated on {len(val)} training-split images. Deployed: {name}.")
    report.table("lung", table)
    return lungs


def train_stage1(ctx: RunContext) -> None:
    """Table 3: Stage I's U-Net trained on the seed set's training images, scored on its test images."""
    config, report = ctx.config, ctx.report
    seed = [s for s in ctx.samples if s.dataset in SEED_DATASETS and s.lung_mask_path is not None]
    train = [s for s in seed if not ctx.is_test(s)]
    test = [s for s in seed if ctx.is_test(s)]
    name = config.stage1_network
    table = Table("Stage I: U-Net on the seed set (Montgomery, Shenzhen), test split (Table 3)",
                  seg_columns("network", "dataset"))
    if len(train) < 2 or not test:
        table.add(name, "Montgomery + Shenzhen", len(test), *["too few to measure"] * len(SEG_METRICS))
        table.note = (f"The workspace holds {len(seed)} seed-set images with a lung mask ({len(train)} training, "
                      f"{len(test)} test): too few to train and score Stage I's network.")
        report.table("stage1", table)
        return
    fit, val = training_sets(ctx, train, "Stage I U-Net", config.max_lung_train_images)
    res = fit_lung(ctx, name, fit, val, ctx.work_path / "stage1" / name, "recognition-stage1")
    report.register("lung", name, res.checkpoint_path, res.model_version, {**res.metrics, "purpose": "stage1"})
    predictor = Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=ctx.device)
    predicted = dict(zip((s.key for s in test), predictor.predict([ctx.pixels(s) for s in test]), strict=True))
    for label, datasets in (("Montgomery", ("Montgomery",)), ("Shenzhen", ("Shenzhen",)),
                            ("Montgomery + Shenzhen", SEED_DATASETS)):
        part = [s for s in test if s.dataset in datasets]
        if not part:
            table.add(name, label, 0, *["too few to measure"] * len(SEG_METRICS))
            continue
        scores = segmentation_scores([predicted[s.key] for s in part], [reference_lung(ctx, s) for s in part])
        table.add(name, label, *seg_cells(scores))
        report.results.setdefault("stage1", {})[label] = scores
    table.note = (f"Per-image means; trained on {len(fit)} and validated on {len(val)} seed-set images of the "
                  f"training split; n = the seed set's test images.")
    report.table("stage1", table)
