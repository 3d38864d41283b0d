"""Stage II, collaborative evaluation: rounds of images pre-labelled by the working network and judged
by RAs (accept / reject + edit / unsure -> MD advice -> RA adjust / exclude).

The functions here work on the DB session they are given (the CLI commits). Label Studio is reached only
through the ``queues`` gateway (``workflows.gateway``), so a sync re-run after a crash reads the same
annotations and records nothing twice: each decision is keyed by its Label Studio annotation id and
update time.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.errors import AnnotatorError
from annotator.evaluation.metrics import dice
from annotator.labelstudio.queue import Queue
from annotator.model_registry import working_model
from annotator.store import add_mask, image_pixels, read_mask_by_id, read_mask_of
from db.models import Decision, Image, Mask, Round, Task
from workflows import engine, protocol
from workflows.handler import Handler, new_task
from workflows.qc import check_lung_mask
from workflows.retrain import fine_tune_working, repository_data, reserve_collection_validation, validation_dsc
from workflows.sampling import Candidate, choose

log = logging.getLogger(__name__)

STAGE = 2
OPEN_STATES = ("predicted", "rejected", "unsure", "md_advised")  # a round is undecided while any image is here
STAGE2_MADE = ("accepted", "corrected", "adjusted")  # masks Stage II adds to the repository
CANDIDATE_STATES = ("pool", "denied")  # never judged, or denied by every network in Stage III


@dataclass
class RoundReport:
    round_id: int
    number: int
    size: int
    strategy: str
    model_version: str
    qc_flagged: int = 0


def open_round(session: Session, stage: int = STAGE) -> Round | None:
    return session.scalar(select(Round).where(Round.stage == stage, Round.status == "open").order_by(Round.id.desc()).limit(1))


def stage2_mask_count(session: Session) -> int:
    """Masks Stage II has added to the repository (the target counts these)."""
    return session.scalar(select(func.count(Image.id)).where(Image.state.in_(STAGE2_MADE))) or 0


def candidates(session: Session, require_reference: bool = False) -> list[Image]:
    """Images a round may take: never judged (pool) or denied in Stage III."""
    images = list(session.scalars(select(Image).where(Image.state.in_(CANDIDATE_STATES)).order_by(Image.id)))
    if require_reference:
        with_ref = _with_reference(session)
        images = [i for i in images if i.id in with_ref]
    return images


def candidate_rows(session: Session, require_reference: bool = False) -> list:
    """``candidates`` as plain rows of what a round's choice reads (id, class, dataset, resolution bin,
    contrast, SNR, state). A pool of 30,000 loads in 0.09 s this way against 0.56 s as ORM objects, whose
    cost grows faster than the pool (the garbage collector walks every loaded object)."""
    rows = list(session.execute(select(Image.id, Image.cls, Image.dataset, Image.resolution_bin, Image.contrast,
                                       Image.snr, Image.state)
                                .where(Image.state.in_(CANDIDATE_STATES)).order_by(Image.id)))
    if require_reference:
        with_ref = _with_reference(session)
        rows = [r for r in rows if r.id in with_ref]
    return rows


def _with_reference(session: Session) -> set[int]:
    return set(session.scalars(select(Mask.image_id).where(Mask.kind == "lung", Mask.origin == "seed")))


def images_by_id(session: Session, ids) -> list[Image]:
    """The Image rows of ``ids``, in id order (read in chunks: a database caps the parameters of a query)."""
    ids = sorted(set(ids))
    out: list[Image] = []
    for start in range(0, len(ids), 1000):
        out += session.scalars(select(Image).where(Image.id.in_(ids[start:start + 1000])).order_by(Image.id))
    return out


def start_round(session: Session, settings: Settings, predictor, *, size: int, strategy: str = "stratified",
                seed: int = 0, require_reference: bool = False, target: int | None = None,
                progress: bool = True) -> RoundReport:
    """Choose the next images, predict them with the working network, QC each mask, create RA review tasks.

    Nothing is pushed to Label Studio here (``push_tasks`` does that, idempotently).
    """
    if (r := open_round(session)) is not None:
        raise AnnotatorError(f"round {r.number} is still open: run `annotator round sync`, then `annotator round close`")
    model = working_model(session)
    if model is None:
        raise AnnotatorError("no working network: run `annotator stage1 run` first")
    if predictor.model_version != model.model_version:
        raise AnnotatorError(f"the predictor serves {predictor.model_version}, the working network is {model.model_version}")
    mark_seed_images(session)
    target = settings.target_masks if target is None else target
    made = stage2_mask_count(session)
    if target < made:
        raise AnnotatorError(f"the target ({target}) is below the masks Stage II already made ({made}); raise it")
    if made >= target:
        raise AnnotatorError(f"the target of {target} Stage II masks is reached ({made}); go on with `annotator stage3 run`")
    pool = candidate_rows(session, require_reference)
    if not pool:
        raise AnnotatorError("no image is left to evaluate (none in the pool or denied)")
    size = min(size, len(pool), target - made)
    if strategy == "uncertainty":
        rng = random.Random(seed)
        sampled = rng.sample(pool, min(len(pool), 5 * size))  # score a bounded share of a large pool
        scored = images_by_id(session, [r.id for r in sampled])
        uncertainty = _predicted(session, settings, [predictor], scored, "uncertainty", "uncertainty scoring",
                                 progress)
        cands = [Candidate(i.id, i.cls, i.dataset, i.resolution_bin, i.contrast, i.snr, uncertainty[i.id])
                 for i in scored]
    else:
        cands = [Candidate(i.id, i.cls, i.dataset, i.resolution_bin, i.contrast, i.snr) for i in pool]
    chosen = set(choose(strategy, cands, size, seed))
    number = (session.scalar(select(func.max(Round.number)).where(Round.stage == STAGE)) or 0) + 1
    from_denied = sum(1 for i in pool if i.id in chosen and i.state == "denied")
    round_ = Round(stage=STAGE, number=number, size=len(chosen), strategy=strategy, status="open",
                   model_version=model.model_version, summary={"from_stage3_denied": from_denied})
    session.add(round_)
    session.flush()
    images = images_by_id(session, chosen)
    report = RoundReport(round_.id, number, len(images), strategy, model.model_version)
    masks = _predicted(session, settings, [predictor], images, "masks", f"round {number}: pre-labelling", progress)
    for image in images:
        _prelabel(session, settings, model, round_, image, masks[image.id][0], report)
    session.flush()
    return report


def _predicted(session: Session, settings: Settings, predictors: list, images: list[Image], output: str,
               description: str, progress: bool) -> dict[int, object]:
    """Each image's prediction (its masks, one per network, or its uncertainty) by sharded, resumable
    prediction (``annotator.segmentation.sharded``); the shards are dropped when the session commits."""
    from annotator.segmentation import sharded

    by_id = {i.id: i for i in images}
    shards = sharded.predict_job(session, settings.workspace_path, output, predictors, list(by_id),
                                 lambda i: image_pixels(settings, by_id[i]), output=output, description=description,
                                 progress=progress)
    return {i: result for ids, results in shards for i, result in zip(ids, results, strict=True)}


def _prelabel(session: Session, settings: Settings, model, round_: Round, image: Image, mask: np.ndarray,
              report: RoundReport) -> None:
    """Store ``image``'s predicted mask, QC it, move the image to ``predicted`` and add its RA review task."""
    row = add_mask(session, settings, image, "lung", mask, origin="model", author=f"model:{model.model_version}",
                   model_version=model.model_version, skip_if_same=False)
    qc = check_lung_mask(mask)
    report.qc_flagged += int(not qc.ok)
    engine.move(session, image, "predict", actor="system", role="system", round_id=round_.id,
                model_version=model.model_version)
    session.add(Task(image_id=image.id, round_id=round_.id, queue=Queue.RA_REVIEW,
                     model_version=model.model_version, status="open",
                     payload={"mask_id": row.id, "qc": qc.text, "qc_ok": qc.ok}))


def next_round(session: Session, settings: Settings, *, size: int, strategy: str = "stratified", seed: int = 0,
               require_reference: bool = False, target: int | None = None, progress: bool = True) -> dict:
    """What `annotator round next` does (and the demo with it): the open round, resumed, or a new one
    pre-labelled by the working network."""
    from workflows.session import working_predictor

    current = open_round(session)
    if current is not None:
        return {"round_id": current.id, "number": current.number, "resumed": True}
    report = start_round(session, settings, working_predictor(session, settings), size=size, strategy=strategy,
                         seed=seed, require_reference=require_reference, target=target, progress=progress)
    return {**report.__dict__, "resumed": False}


# -- decisions of this stage's queues ---------------------------------------------------------------
def _keep(session, settings, task, image, decision, kw, mask, origin: str) -> None:
    """A new lung mask version made by this decision (the shown prediction kept, or the person's own)."""
    if mask is None:  # the prediction the task showed
        mask = read_mask_by_id(session, settings, task.payload["mask_id"])
    add_mask(session, settings, image, "lung", mask, origin=origin, author=kw["actor"],
             model_version=task.model_version, decision_id=decision.id, skip_if_same=False)


def _accept(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "accept", **kw)
    _keep(session, settings, task, image, decision, kw, None, "ra_accepted")


def _reject(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "reject", **kw)
    _keep(session, settings, task, image, decision, kw, annotation.mask, "ra_edited")
    engine.move(session, image, "correct", **kw)


def _unsure(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "doubt", **kw)
    new_task(session, task, Queue.MD_ADVICE, {"mask_id": task.payload["mask_id"], "ra_case": annotation.comment or "",
                                              "qc": task.payload.get("qc", "")}, report)


def _exclude(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "exclude", **kw)
    image.attributes = {**image.attributes, "excluded_reason": annotation.comment or "excluded by RA"}


def _md_adjust(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "advise", **kw)
    new_task(session, task, Queue.RA_ADJUST, {"mask_id": task.payload["mask_id"],
                                              "advice": annotation.comment or ""}, report)


def _md_accept(session, settings, task, image, annotation, decision, kw, report):
    """The MD finds the prediction right: advised and adjusted in one go, the prediction kept."""
    engine.move(session, image, "advise", **kw)
    engine.move(session, image, "adjust", **kw)
    _keep(session, settings, task, image, decision, kw, None, "md_adjusted")


def _md_exclude(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "exclude", **kw)
    image.attributes = {**image.attributes, "excluded_reason": annotation.comment or "excluded by MD"}


def _ra_adjusted(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "adjust", **kw)
    _keep(session, settings, task, image, decision, kw, annotation.mask, "md_adjusted")


HANDLERS: tuple[Handler, ...] = (
    Handler(Queue.RA_REVIEW, "accept", ("accept",), _accept),
    Handler(Queue.RA_REVIEW, "reject", ("reject", "correct"), _reject),
    Handler(Queue.RA_REVIEW, "unsure", ("doubt",), _unsure),
    Handler(Queue.RA_REVIEW, "exclude", ("exclude",), _exclude),
    Handler(Queue.MD_ADVICE, "adjust", ("advise",), _md_adjust),
    Handler(Queue.MD_ADVICE, "accept", ("advise", "adjust"), _md_accept),
    Handler(Queue.MD_ADVICE, "exclude", ("exclude",), _md_exclude),
    Handler(Queue.RA_ADJUST, "adjusted", ("adjust",), _ra_adjusted),
)


def undecided(session: Session, round_: Round) -> int:
    """Images of the round still waiting for a person."""
    ids = select(Task.image_id).where(Task.round_id == round_.id)
    return session.scalar(select(func.count(Image.id)).where(Image.id.in_(ids), Image.state.in_(OPEN_STATES))) or 0


def round_summary(session: Session, settings: Settings, round_: Round) -> dict:
    """Per round: decisions by kind, share accepted unedited, mean DSC of the predictions to the final
    masks, and the people's minutes."""
    decisions = list(session.scalars(select(Decision).where(Decision.round_id == round_.id, Decision.valid.is_(True))))
    by_kind: dict[str, int] = {}
    for d in decisions:
        by_kind[d.decision] = by_kind.get(d.decision, 0) + 1
    tasks = list(session.scalars(select(Task).where(Task.round_id == round_.id, Task.queue == Queue.RA_REVIEW)))
    review_ids = {t.id for t in tasks}
    reviews = [d for d in decisions if d.task_id in review_ids]
    accepted = sum(1 for d in reviews if d.decision == "accept")
    scores = []
    for task in tasks:
        image = session.get(Image, task.image_id)
        if image.state not in protocol.IN_REPOSITORY:
            continue
        final = session.scalar(select(Mask).where(Mask.image_id == image.id, Mask.kind == "lung",
                                                  Mask.origin != "model").order_by(Mask.version.desc()).limit(1))
        pred = session.get(Mask, task.payload["mask_id"])
        if final is not None and pred is not None:
            scores.append(dice(read_mask_of(settings, pred), read_mask_of(settings, final)))
    return {
        "round": round_.number, "images": round_.size, "model_version": round_.model_version,
        "decisions": by_kind, "reviews": len(reviews),
        "accepted_unedited_share": accepted / len(reviews) if reviews else None,
        "prediction_dsc_to_final": float(np.mean(scores)) if scores else None,
        "ra_minutes": round(sum((d.lead_time_s or 0.0) for d in decisions if d.role == "RA") / 60.0, 2),
        "md_minutes": round(sum((d.lead_time_s or 0.0) for d in decisions if d.role == "MD") / 60.0, 2),
    }


def close_round(session: Session, settings: Settings, preset: str, progress: bool = True) -> dict:
    """Refuse while images of the open round are undecided; else fine-tune the working network on the
    grown repository, make it the working one and store the round's summary (with its validation DSC and
    the previous network's, on the same fixed set; the first close reserves that set's collection part)."""
    round_ = open_round(session)
    if round_ is None:
        raise AnnotatorError("no open round: start one with `annotator round next`")
    waiting = undecided(session, round_)
    if waiting:
        raise AnnotatorError(f"round {round_.number}: {waiting} image(s) are still undecided; "
                             "let the RAs/MDs finish, then `annotator round sync` (and `annotator md queue --sync`)")
    before = working_model(session)
    verified = list(session.scalars(select(Image.id).where(
        Image.id.in_(select(Task.image_id).where(Task.round_id == round_.id, Task.queue == Queue.RA_REVIEW)),
        Image.state.in_(STAGE2_MADE)).order_by(Image.id)))
    reserved = reserve_collection_validation(session, verified, seed=round_.number)
    data = repository_data(session, settings)
    val_before = validation_dsc(settings, before, data) if before is not None else None
    model = fine_tune_working(session, settings, preset, stage=f"round-{round_.number}", progress=progress, data=data)
    kept = before is not None and model.id == before.id  # the fine-tune never beat it on validation
    summary = round_summary(session, settings, round_)
    summary.update({"previous_model_version": before.model_version if before else None,
                    "new_model_version": model.model_version,
                    "val_dsc_before": val_before,
                    "val_dsc": val_before if kept else (model.metrics or {}).get("val_dsc"),
                    "kept_previous": kept,
                    "val_images": len(data.val), "val_collection_images": len(reserved),
                    "repository_stage2_masks": stage2_mask_count(session)})
    round_.summary = {**(round_.summary or {}), **summary}
    round_.status = "closed"
    round_.closed_at = datetime.now(timezone.utc)
    session.flush()
    crash_point("close.after_publish")
    return summary


def mark_seed_images(session: Session, datasets: tuple[str, ...] = ("Montgomery", "Shenzhen")) -> int:
    """Stage I's seed set (hand-drawn masks of ``datasets``) is the first repository: pool -> seed, once."""
    with_seed = select(Mask.image_id).where(Mask.kind == "lung", Mask.origin == "seed")
    images = session.scalars(select(Image).where(Image.state == "pool", Image.id.in_(with_seed),
                                                 func.lower(Image.dataset).in_([d.lower() for d in datasets])))
    moved = 0
    for image in images:
        engine.move(session, image, "seed", actor="system", role="system")
        moved += 1
    return moved
