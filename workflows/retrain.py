"""Retraining on the grown repository: after each Stage II round (fine-tune the working network) and in
Stage III (six networks, then the most-picked one).

The validation set is fixed from the first round's close on, so the DSC of successive working networks
can be compared. It has two parts, neither ever trained on: Stage I's held-out ``val`` part of the seed
set, and a collection part: a stratified share (``COLLECTION_VAL_SHARE``) of the first round's verified
masks, reserved when that round closes. Without the second part the score would only say how well the
network still draws Montgomery/Shenzhen lungs, not whether it learns the collection it is labelling.

While the collection's masks (made in Stages II-III) are fewer than the seed's, each is repeated in the
training set (up to ``MAX_REPEAT`` times) so that the collection weighs about as much as the seed set: the
network learns the collection's look from the first round on instead of after it outnumbers the seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.errors import AnnotatorError
from annotator.evaluation.metrics import segmentation_scores
from annotator.model_registry import checkpoint_file, drop_resume_state, mark_working, publish, working_model
from annotator.segmentation.presets import get_preset
from annotator.segmentation.registry import get_spec
from annotator.store import image_pixels, read_mask_of
from db.models import Image, Mask, Model, SplitMember
from db.queries import current_mask
from workflows.protocol import IN_REPOSITORY
from workflows.sampling import Candidate, choose

if TYPE_CHECKING:
    from annotator.segmentation.presets import TrainConfig

log = logging.getLogger(__name__)

HELD_OUT = ("val", "test")  # Stage I's fixed parts, never trained on
COLLECTION_VAL = "validation"  # split name of the collection part of the validation set
COLLECTION_VAL_SHARE = 0.2
MAX_REPEAT = 3


@dataclass(frozen=True)
class RepositoryData:
    train: list[tuple[np.ndarray, np.ndarray]]
    val: list[tuple[np.ndarray, np.ndarray]]
    train_image_ids: list[int]
    val_image_ids: list[int]
    train_mask_ids: list[int]
    train_is_seed: list[bool]

    def collection_repeat(self) -> int:
        """How often each collection mask enters an epoch: seed count / collection count, 1..MAX_REPEAT."""
        seed = sum(self.train_is_seed)
        collection = len(self.train) - seed
        if collection == 0:
            return 1
        return int(min(MAX_REPEAT, max(1, round(seed / collection))))

    def training_pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        repeat = self.collection_repeat()
        return [pair for pair, is_seed in zip(self.train, self.train_is_seed, strict=True)
                for _ in range(1 if is_seed else repeat)]


def _held_out(session: Session) -> dict[int, str]:
    rows = session.execute(select(SplitMember.image_id, SplitMember.split).where(
        SplitMember.name == "stage1", SplitMember.split.in_(HELD_OUT))).all()
    protocol_test = session.scalars(select(SplitMember.image_id).where(
        SplitMember.name == "protocol", SplitMember.split == "test")).all()
    collection_val = session.scalars(select(SplitMember.image_id).where(SplitMember.name == COLLECTION_VAL)).all()
    out = {i: s for i, s in rows}
    out.update({i: "collection-val" for i in collection_val})
    out.update({i: "protocol-test" for i in protocol_test})
    return out


def reserve_collection_validation(session: Session, image_ids: list[int], seed: int = 0) -> list[int]:
    """Once (at the first round's close): a stratified ``COLLECTION_VAL_SHARE`` of ``image_ids`` (the
    round's verified images) becomes the collection part of the fixed validation set. Later calls return
    the reserved ids and change nothing."""
    reserved = list(session.scalars(select(SplitMember.image_id).where(SplitMember.name == COLLECTION_VAL)
                                    .order_by(SplitMember.image_id)))
    if reserved or not image_ids:
        return reserved
    images = list(session.scalars(select(Image).where(Image.id.in_(image_ids)).order_by(Image.id)))
    size = max(1, round(COLLECTION_VAL_SHARE * len(images)))
    chosen = choose("stratified", [Candidate(i.id, i.cls, i.dataset, i.resolution_bin, i.contrast, i.snr)
                                   for i in images], size, seed)
    for image_id in chosen:
        session.add(SplitMember(image_id=image_id, name=COLLECTION_VAL, split="val"))
    session.flush()
    log.info("%d verified images of the first round reserved as the collection part of the validation set", len(chosen))
    return chosen


def repository_data(session: Session, settings: Settings) -> RepositoryData:
    """(image, current lung mask) pairs of the repository, minus the fixed held-out images; the fixed
    validation pairs (Stage I's ``val`` part and the collection part)."""
    held = _held_out(session)
    train, train_ids, mask_ids, is_seed, val, val_ids = [], [], [], [], [], []
    for image in session.scalars(select(Image).where(Image.state.in_(IN_REPOSITORY)).order_by(Image.id)):
        if image.id in held:
            continue
        mask = current_mask(session, image.id, "lung")
        if mask is None or mask.origin == "model":
            continue
        train.append((image_pixels(settings, image), read_mask_of(settings, mask)))
        train_ids.append(image.id)
        mask_ids.append(mask.id)
        is_seed.append(mask.origin == "seed")
    for image_id in sorted(i for i, s in held.items() if s in ("val", "collection-val")):
        image = session.get(Image, image_id)
        if held[image_id] == "val":  # the seed's hand-drawn mask
            mask = session.scalar(select(Mask).where(Mask.image_id == image_id, Mask.kind == "lung",
                                                     Mask.origin == "seed").order_by(Mask.version.desc()).limit(1))
        else:  # the mask the people verified
            mask = current_mask(session, image_id, "lung")
            if mask is not None and mask.origin == "model":
                mask = None
        if image is None or mask is None:
            continue
        val.append((image_pixels(settings, image), read_mask_of(settings, mask)))
        val_ids.append(image_id)
    if not val:
        raise AnnotatorError("no fixed validation set: run `annotator stage1 run` first")
    if not train:
        raise AnnotatorError("the repository is empty: nothing to train on")
    return RepositoryData(train, val, train_ids, val_ids, mask_ids, is_seed)


def train_on_repository(session: Session, settings: Settings, spec_name: str, preset: str | TrainConfig,
                        stage: str, *, init_from: Model | None = None, data: RepositoryData | None = None,
                        progress: bool = True, make_working: bool = False) -> Model:
    """Train ``spec_name`` on the repository (fine-tuning ``init_from`` when given) and register it. A
    fine-tune that never beats ``init_from`` on the validation set returns ``init_from`` itself."""
    from annotator.segmentation.train import train_model

    data = data or repository_data(session, settings)
    spec = get_spec(spec_name)
    config = get_preset(preset) if isinstance(preset, str) else preset
    weights = checkpoint_file(settings.workspace_path, init_from) if init_from is not None else None
    snapshot = {"stage": stage, "n_train": len(data.train), "train_image_ids": data.train_image_ids,
                "collection_repeat": data.collection_repeat(),
                "train_mask_ids": data.train_mask_ids, "val_image_ids": data.val_image_ids,
                "init_from": init_from.model_version if init_from else None}
    out_dir = settings.models_path / stage / spec.name
    result = train_model(spec, config, data.training_pairs(), data.val, out_dir, progress=progress, snapshot=snapshot,
                         weights_path=weights, device=settings.device)
    crash_point("train.after_training")
    if init_from is not None and result.metrics.get("best_epoch") == 0:
        # no epoch beat the starting network on the fixed validation set: it stays, nothing new is registered
        log.info("no epoch of %s beat %s on validation: it stays", stage, init_from.model_version)
        drop_resume_state(result.checkpoint_path)  # a run that is not published is not extended either
        if make_working:
            mark_working(session, init_from)
        return init_from
    row = publish(session, settings, result, spec=spec.name, preset=config.name, snapshot=snapshot, stage=stage,
                  parent_version=init_from.model_version if init_from else None, make_working=make_working)
    log.info("%s trained on %d repository masks: val DSC %.4f", row.model_version, len(data.train),
             result.metrics.get("val_dsc", float("nan")))
    return row


def fine_tune_working(session: Session, settings: Settings, preset: str, stage: str, progress: bool = True,
                      data: RepositoryData | None = None) -> Model:
    """After a round: the working network, fine-tuned on the grown repository, becomes the working one."""
    current = working_model(session)
    if current is None:
        raise AnnotatorError("no working network: run `annotator stage1 run` first")
    return train_on_repository(session, settings, current.spec, preset, stage, init_from=current,
                               progress=progress, make_working=True, data=data)


def validation_dsc(settings: Settings, model: Model, data: RepositoryData) -> float:
    """``model``'s mean DSC on the fixed validation set (post-processed masks at each image's own size)."""
    from annotator.segmentation.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint_file(settings.workspace_path, model), backend="eager",
                                          device=settings.device)
    predicted = predictor.predict([image for image, _ in data.val])
    return float(segmentation_scores(predicted, [mask for _, mask in data.val])["dsc"])
