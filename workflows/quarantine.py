"""Quarantine: an annotation that cannot be applied stops alone, never the sync.

Each annotation is applied in its own savepoint. When applying it fails for a reason the annotation holds
(unreadable, no decision, a mask that does not fit, a value the database refuses, an event the protocol
forbids), the savepoint is rolled back and the annotation is kept as a decision row that is not valid,
with the reason: shown in the sync report and in ``round status``, skipped by later syncs (its annotation
id and update time are taken) and tried again once someone edits it (a new update time). A failure of the
database itself (locked, gone) is not the annotation's: it ends the sync's transaction as before.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import AnnotatorError
from annotator.labelstudio.queue import get_queue
from db.models import Decision, Task

log = logging.getLogger(__name__)

MESSAGE_CHARS = 2000


def _text(value, size: int) -> str | None:
    return None if value is None else str(value)[:size]


def _number(value) -> float | None:
    return value if isinstance(value, float) and math.isfinite(value) else None


def _int(value) -> int | None:
    return value if isinstance(value, int) and -(2**31) <= value < 2**31 else None


def _recorded(session: Session, annotation_id: int | None, updated_at: str) -> bool:
    return session.scalar(select(func.count(Decision.id)).where(Decision.ls_annotation_id == annotation_id,
                                                                Decision.ls_updated_at == updated_at)) > 0


def _role(queue: str) -> str:
    try:
        return get_queue(queue).role
    except AnnotatorError:  # a queue name no spec knows: the sync still records the annotation
        return "RA"


def quarantine(session: Session, task: Task, annotation, reason: str, report) -> None:
    """Keep ``annotation`` as a not-applied decision with ``reason`` (once per annotation version)."""
    updated_at = _text(annotation.updated_at, 64) or "None"
    if _recorded(session, annotation.ls_annotation_id, updated_at):
        report.skipped += 1
        return
    with session.begin_nested():
        session.add(Decision(
            image_id=task.image_id, round_id=task.round_id, task_id=task.id,
            actor=_text(annotation.annotator, 128) or "unknown", role=_role(task.queue),
            decision=_text(annotation.decision, 16) or "none", lead_time_s=_number(annotation.lead_time_s),
            comment=_text(annotation.comment, MESSAGE_CHARS), model_version=task.model_version,
            ls_project_id=task.ls_project_id, ls_task_id=task.ls_task_id, ls_annotation_id=annotation.ls_annotation_id,
            ls_prediction_id=_int(getattr(annotation, "ls_prediction_id", None)), ls_updated_at=updated_at,
            ls_user_id=_int(getattr(annotation, "ls_user_id", None)), valid=False, message=reason[:MESSAGE_CHARS]))
        session.flush()
    log.warning("image %s, annotation %s quarantined: %s", task.image_id, annotation.ls_annotation_id, reason)
    report.quarantined.append(f"image {task.image_id} (task {task.ls_task_id}, annotation "
                              f"{annotation.ls_annotation_id}): {reason[:500]}")


def apply_isolated(session: Session, settings: Settings, task: Task, annotation, apply: Callable, report) -> None:
    """``apply`` one annotation in a savepoint; what goes wrong with it is quarantined, not raised."""
    before = copy.deepcopy(vars(report))
    try:
        with session.begin_nested():
            apply(session, settings, task, annotation, report)
    except DBAPIError as exc:
        if not isinstance(exc, (IntegrityError, DataError)):
            raise  # the database itself failed: not this annotation's doing
        vars(report).update(before)
        if isinstance(exc, IntegrityError) and _recorded(session, annotation.ls_annotation_id,
                                                         str(annotation.updated_at)):
            report.skipped += 1  # another sync recorded this very version meanwhile: the unique key held
            return
        quarantine(session, task, annotation, f"the database refused it: {exc.orig}", report)
    except Exception as exc:  # noqa: BLE001 - whatever one annotation causes, it is quarantined alone
        vars(report).update(before)
        quarantine(session, task, annotation, f"{type(exc).__name__}: {exc}", report)


def outstanding(session: Session, round_id: int | None = None) -> list[dict]:
    """The tasks whose newest reading is a quarantined annotation (nothing applied since), oldest first."""
    newest = select(Decision.task_id, func.max(Decision.id).label("id")).where(Decision.task_id.is_not(None))
    if round_id is not None:
        newest = newest.where(Decision.round_id == round_id)
    newest = newest.group_by(Decision.task_id).subquery()
    rows = session.scalars(select(Decision).join(newest, Decision.id == newest.c.id)
                           .where(Decision.valid.is_(False), Decision.refused.is_(False)).order_by(Decision.id))
    return [{"image_id": d.image_id, "ls_task_id": d.ls_task_id, "ls_annotation_id": d.ls_annotation_id,
             "updated_at": d.ls_updated_at, "reason": d.message} for d in rows]


def refused_open(session: Session, round_id: int | None = None) -> list[dict]:
    """Refused decisions (their author may not decide in that queue) on tasks still open, oldest first."""
    query = (select(Decision).join(Task, Task.id == Decision.task_id)
             .where(Decision.refused.is_(True), Task.status == "open").order_by(Decision.id))
    if round_id is not None:
        query = query.where(Decision.round_id == round_id)
    return [{"image_id": d.image_id, "ls_task_id": d.ls_task_id, "ls_annotation_id": d.ls_annotation_id,
             "actor": d.actor, "decision": d.decision, "reason": d.message} for d in session.scalars(query)]
