"""Stage IV, final verification: MDs verify a stratified sample (20% by default) of the repository; the
verified (or MD-corrected) images become the test split, the rest splits 80/20 into train/validation."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.errors import AnnotatorError
from annotator.labelstudio.queue import Queue
from annotator.store import add_mask, read_mask_by_id
from db.models import Image, Round, Task
from db.queries import current_mask
from workflows import engine
from workflows.handler import Handler
from workflows.protocol import IN_REPOSITORY, VERIFIABLE
from workflows.splits import assign_splits, stratified_sample

STAGE = 4
VERIFY_MODEL_VERSION = "repository-mask"  # what the MD sees is the current mask, whatever made it


def stage4_round(session: Session) -> Round | None:
    return session.scalar(select(Round).where(Round.stage == STAGE).order_by(Round.id.desc()).limit(1))


def sample(session: Session, settings: Settings, fraction: float = 0.2, seed: int = 0) -> dict:
    """Sample the repository for MD verification (once; a re-run reports the same sample)."""
    existing = stage4_round(session)
    if existing is not None:
        return {"round_id": existing.id, "sampled": existing.size, "fraction": existing.summary.get("fraction")}
    if not 0 < fraction <= 1:
        raise AnnotatorError(f"--fraction must be in (0, 1], got {fraction}")
    images = list(session.scalars(select(Image).where(Image.state.in_(VERIFIABLE)).order_by(Image.id)))
    if not images:
        raise AnnotatorError("the repository is empty: nothing to verify (run Stages I-III first)")
    chosen = set(stratified_sample(images, fraction, seed))
    round_ = Round(stage=STAGE, number=1, size=len(chosen), strategy="stratified", status="open",
                   summary={"fraction": fraction, "repository": len(images)})
    session.add(round_)
    session.flush()
    for image in images:
        if image.id not in chosen:
            continue
        mask = current_mask(session, image.id, "lung")
        engine.move(session, image, "sample", actor="system", role="system", round_id=round_.id)
        # one model_version for the whole queue: Label Studio's stream shows only the project's version
        session.add(Task(image_id=image.id, round_id=round_.id, queue=Queue.MD_VERIFY, status="open",
                         model_version=VERIFY_MODEL_VERSION,
                         payload={"mask_id": mask.id, "mask_model_version": mask.model_version,
                                  "mask_origin": mask.origin}))
    session.flush()
    crash_point("stage4.after_sample")
    return {"round_id": round_.id, "sampled": len(chosen), "fraction": fraction, "repository": len(images)}


def _verified(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "verify", **kw)
    shown = read_mask_by_id(session, settings, task.payload["mask_id"])
    add_mask(session, settings, image, "lung", shown, origin="md_verified",
             author=kw["actor"], model_version=task.payload.get("mask_model_version"), decision_id=decision.id,
             skip_if_same=False)


def _corrected(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "md_correct", **kw)
    add_mask(session, settings, image, "lung", annotation.mask, origin="md_corrected", author=kw["actor"],
             model_version=task.payload.get("mask_model_version"), decision_id=decision.id, skip_if_same=False)


HANDLERS: tuple[Handler, ...] = (
    Handler(Queue.MD_VERIFY, "verified", ("verify",), _verified),
    Handler(Queue.MD_VERIFY, "corrected", ("md_correct",), _corrected),
)


def finish(session: Session, seed: int = 0) -> dict:
    """When every sampled image is decided: store the splits (test = verified; train/val 80/20)."""
    round_ = stage4_round(session)
    if round_ is None:
        raise AnnotatorError("Stage IV has not sampled yet: `annotator stage4 sample` first")
    waiting = session.scalar(select(func.count(Image.id)).where(Image.state == "sampled")) or 0
    if waiting:
        return {"waiting": waiting, "splits": None}
    test_ids = set(session.scalars(select(Image.id).where(Image.state.in_(("verified", "md_corrected")))))
    rest = set(session.scalars(select(Image.id).where(Image.state.in_(IN_REPOSITORY)))) - test_ids
    counts = assign_splits(session, test_ids, rest, seed=seed)
    round_.status = "closed"
    round_.summary = {**round_.summary, "splits": counts}
    session.flush()
    crash_point("stage4.after_splits")
    return {"waiting": 0, "splits": counts}
