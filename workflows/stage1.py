"""Stage I: the first working network. Three U-Net variants train on the seed lung masks of the
Montgomery and Shenzhen images; a fixed held-out part validates them (and picks the best by DSC), a
second fixed part, never seen in training or selection, tests them. All three are registered as ``Model``
rows; the best is marked ``is_working``. A second run after success does nothing unless ``force``.

The variants: U-Net with a ResNet18 encoder (the thesis' lightest, 14.32 M parameters, the fastest on a
CPU), a DenseNet121 encoder (dense connections, fewer parameters, 13.6 M) and a ResNet50 encoder (the
deeper residual one, 32.5 M): one decoder, three encoder families of different depth and cost.

No torch at import: the segmentation engine is imported inside the functions that train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import TrainingError
from annotator.evaluation.metrics import segmentation_scores
from annotator.model_registry import mark_working, publish
from annotator.segmentation.presets import get_preset
from annotator.segmentation.registry import get_spec
from annotator.store import image_pixels, read_mask_of
from db.models import Image, Mask, Model, SplitMember

if TYPE_CHECKING:
    from annotator.segmentation.train import TrainResult

log = logging.getLogger(__name__)

STAGE = "stage1"
SPLIT_NAME = "stage1"
SEED_DATASETS = ("Montgomery", "Shenzhen")
VARIANTS: tuple[str, ...] = ("unet-resnet18", "unet-densenet121", "unet-resnet50")
# Share of the preset's time budget (max_train_s) per variant: ResNet18 steps are 2-3x cheaper than the
# others' and it is the likeliest working network, so it gets 1.5 budgets and the others 0.75 (quick:
# 12 + 6 + 6 minutes of training, the rest of the 30 for loading, testing and the fast-path checks).
BUDGET_SHARE = {"unet-resnet18": 1.5, "unet-densenet121": 0.75, "unet-resnet50": 0.75}
TEST_PERCENT = 15  # never seen: reported as the held-out DSC
VAL_PERCENT = 10  # early stopping, learning-rate schedule and the choice of the working network


@dataclass
class VariantResult:
    spec: str
    model_version: str
    checkpoint_path: str  # relative to the workspace
    metrics: dict
    is_working: bool = False


@dataclass
class Stage1Result:
    skipped: bool
    preset: str
    variants: list[VariantResult] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def working(self) -> VariantResult | None:
        return next((v for v in self.variants if v.is_working), None)

    def as_dict(self) -> dict:
        return {"skipped": self.skipped, "preset": self.preset, "counts": self.counts,
                "elapsed_s": round(self.elapsed_s, 1),
                "working": self.working.model_version if self.working else None,
                "variants": [{"spec": v.spec, "model_version": v.model_version, "checkpoint_path": v.checkpoint_path,
                              "is_working": v.is_working, "val_dsc": v.metrics.get("val_dsc"),
                              "test_dsc": v.metrics.get("test_dsc"), "test": v.metrics.get("test"),
                              "epochs": v.metrics.get("epochs"), "train_s": v.metrics.get("train_s")}
                             for v in self.variants]}


def split_of(sha256: str) -> str:
    """A fixed split by content hash: the same image lands in the same part in every workspace."""
    bucket = int(hashlib.sha256(sha256.encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < TEST_PERCENT else "val" if bucket < TEST_PERCENT + VAL_PERCENT else "train"


def seed_lung_masks(session: Session, datasets: Sequence[str] = SEED_DATASETS) -> list[tuple[Image, Mask]]:
    """The newest seed lung mask of each image of ``datasets`` (case-insensitive), by image id."""
    newest = (select(Mask.image_id, func.max(Mask.version).label("version"))
              .where(Mask.kind == "lung", Mask.origin == "seed").group_by(Mask.image_id).subquery())
    rows = session.execute(
        select(Image, Mask)
        .join(newest, newest.c.image_id == Image.id)
        .join(Mask, (Mask.image_id == Image.id) & (Mask.kind == "lung") & (Mask.version == newest.c.version))
        .where(func.lower(Image.dataset).in_([d.lower() for d in datasets]))
        .order_by(Image.id)
    ).all()
    return [(image, mask) for image, mask in rows]


def plan_split(session: Session, images: Sequence[Image], name: str = SPLIT_NAME) -> tuple[dict[int, str], list[int]]:
    """The stored split of each image under ``name``, else ``split_of``; and the ids not stored yet.
    Reads only, so a long training that follows holds no write lock on the database."""
    ids = [i.id for i in images]
    stored = dict(session.execute(
        select(SplitMember.image_id, SplitMember.split).where(SplitMember.name == name, SplitMember.image_id.in_(ids))
    ).all())
    new = [i.id for i in images if i.id not in stored]
    stored.update({i.id: split_of(i.sha256) for i in images if i.id in new})
    return stored, new


def store_split(session: Session, splits: dict[int, str], new_ids: Sequence[int], name: str = SPLIT_NAME) -> None:
    for image_id in new_ids:
        session.add(SplitMember(image_id=image_id, name=name, split=splits[image_id]))
    session.flush()


def assign_split(session: Session, images: Sequence[Image], name: str = SPLIT_NAME) -> dict[int, str]:
    """The stored split of each image under ``name``; images without one get ``split_of`` (kept forever)."""
    splits, new = plan_split(session, images, name)
    store_split(session, splits, new, name)
    return splits


def load_pairs(settings: Settings, rows: Sequence[tuple[Image, Mask]]) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for image, mask in rows:
        pairs.append((image_pixels(settings, image), read_mask_of(settings, mask)))
    return pairs


def run_stage1(session: Session, settings: Settings, preset="quick", force: bool = False,
               progress: bool = True, variants: Sequence[str] | None = None) -> Stage1Result:
    """Train, test and register the Stage I variants; mark the best by validation DSC as working.

    ``preset``: a preset name (quick, paper, tiny) or a TrainConfig.
    """
    from annotator.segmentation.predict import Predictor
    from annotator.segmentation.train import train_model

    config = get_preset(preset) if isinstance(preset, str) else preset
    specs = [get_spec(name) for name in (variants or VARIANTS)]  # a wrong name fails before any work
    done = session.scalars(select(Model).where(Model.stage == STAGE).order_by(Model.id)).all()
    if done and not force:
        return Stage1Result(skipped=True, preset=done[0].preset or preset, variants=[
            VariantResult(m.spec, m.model_version, m.checkpoint_path, m.metrics, m.is_working) for m in done])
    started = time.perf_counter()
    rows = seed_lung_masks(session)
    if not rows:
        raise TrainingError(f"no seed lung masks of {' or '.join(SEED_DATASETS)} images in the workspace; import "
                            "them first, e.g. `annotator data import PATH --layout manifest`")
    splits, new_split_ids = plan_split(session, [image for image, _ in rows])
    parts: dict[str, list[tuple[Image, Mask]]] = {"train": [], "val": [], "test": []}
    for image, mask in rows:
        parts[splits[image.id]].append((image, mask))
    counts = {k: len(v) for k, v in parts.items()}
    if not parts["train"] or not parts["val"] or not parts["test"]:
        raise TrainingError(f"Stage I needs images in each of train, val and test; the seed set splits {counts}")
    data = {k: load_pairs(settings, v) for k, v in parts.items()}
    snapshot = {"datasets": list(SEED_DATASETS), "split": SPLIT_NAME, "counts": counts,
                **{f"{k}_image_ids": [i.id for i, _ in v] for k, v in parts.items()},
                "mask_ids": [m.id for _, m in rows]}
    test_images = [img for img, _ in data["test"]]
    test_masks = [m for _, m in data["test"]]
    trained_variants: list[tuple[str, TrainResult, dict]] = []
    for spec in specs:
        out_dir = settings.models_path / STAGE / spec.name
        variant_config = config
        if config.max_train_s is not None:
            variant_config = dataclasses.replace(config, max_train_s=config.max_train_s * BUDGET_SHARE.get(spec.name, 1.0))
        trained = train_model(spec, variant_config, data["train"], data["val"], out_dir, progress=progress,
                              snapshot=snapshot, resume=not force, device=settings.device)
        predictor = Predictor.from_checkpoint(trained.checkpoint_path, backend="eager", device=settings.device)
        test = segmentation_scores(predictor.predict(test_images), test_masks)
        metrics = {**trained.metrics, "test": test, "test_dsc": test["dsc"]}
        trained_variants.append((spec.name, trained, metrics))
        log.info("%s: val DSC %.4f, test DSC %.4f", trained.model_version, metrics["val_dsc"], test["dsc"])
    # all writes at the end: the training above held no write lock on the database
    store_split(session, splits, new_split_ids)
    rows = [publish(session, settings, trained, spec=name, preset=config.name, snapshot=snapshot, stage=STAGE,
                    metrics=metrics) for name, trained, metrics in trained_variants]
    mark_working(session, max(rows, key=lambda row: row.metrics["val_dsc"]))
    return Stage1Result(skipped=False, preset=config.name, counts=counts, elapsed_s=time.perf_counter() - started,
                        variants=[VariantResult(r.spec, r.model_version, r.checkpoint_path, r.metrics, r.is_working)
                                  for r in rows])
