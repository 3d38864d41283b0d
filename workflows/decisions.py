"""Turning Label Studio annotations into protocol decisions: one registry of handlers, keyed by
(queue, decision), filled by the stage modules; each annotation is recorded at most once (by its
annotation id and update time), and an edit after a sync re-opens the image so the newer one wins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import AnnotatorError, ProtocolError
from annotator.imaging.io import read_mask
from db.models import Decision, Image, Mask, Task
from workflows import engine, protocol

QUEUE_ROLES = {"ra_review": "RA", "ra_adjust": "RA", "md_advice": "MD", "md_verify": "MD", "best_of_six": "RA"}
Handler = Callable[..., None]
HANDLERS: dict[tuple[str, str], Handler] = {}


@dataclass
class SyncReport:
    recorded: dict[str, int] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)  # not applied: the annotation is malformed
    invalid: list[str] = field(default_factory=list)  # not applied: the protocol cannot take it now
    edited: int = 0
    skipped: int = 0
    new_tasks: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.recorded[what] = self.recorded.get(what, 0) + 1

    def as_dict(self) -> dict:
        return {"recorded": self.recorded, "quarantined": self.quarantined, "invalid": self.invalid,
                "edited": self.edited, "skipped": self.skipped, "new_tasks": self.new_tasks}


def load_handlers() -> None:
    """Import the stage modules, which register their handlers."""
    import workflows.stage2  # noqa: F401
    import workflows.stage3  # noqa: F401
    import workflows.stage4  # noqa: F401


def prediction_mask(session: Session, settings: Settings, task: Task, image: Image, mask_id: int | None = None) -> np.ndarray:
    mask_row = session.get(Mask, mask_id or task.payload["mask_id"])
    return read_mask(settings.workspace_path / mask_row.store_path, (image.height, image.width))


def new_task(session: Session, parent: Task, queue: str, payload: dict, report: SyncReport) -> None:
    """A follow-up task (MD advice after unsure, RA adjust after advice), once."""
    exists = session.scalar(select(Task.id).where(Task.image_id == parent.image_id, Task.round_id == parent.round_id,
                                                  Task.queue == queue))
    if exists is None:
        session.add(Task(image_id=parent.image_id, round_id=parent.round_id, queue=queue,
                         model_version=parent.model_version, status="open", payload=payload))
        report.new_tasks[queue] = report.new_tasks.get(queue, 0) + 1
        session.flush()


def _decision_seen(session: Session, annotation) -> Decision | None:
    return session.scalar(select(Decision).where(Decision.ls_annotation_id == annotation.ls_annotation_id)
                          .order_by(Decision.id.desc()).limit(1))


def _applied(session: Session, annotation) -> bool:
    """Was an earlier version of this annotation applied (a later one may have been quarantined since)?"""
    return session.scalar(select(Decision.id).where(Decision.ls_annotation_id == annotation.ls_annotation_id,
                                                    Decision.valid.is_(True)).limit(1)) is not None


def _record(session: Session, task: Task, annotation, decision: str, role: str, valid: bool = True,
            message: str | None = None, detail: str | None = None) -> Decision:
    row = Decision(
        image_id=task.image_id, round_id=task.round_id, task_id=task.id, actor=annotation.annotator or "unknown",
        role=role, decision=decision, detail=detail, lead_time_s=annotation.lead_time_s, comment=annotation.comment,
        model_version=task.model_version, ls_project_id=task.ls_project_id, ls_task_id=task.ls_task_id,
        ls_annotation_id=annotation.ls_annotation_id, ls_prediction_id=getattr(annotation, "ls_prediction_id", None),
        ls_updated_at=str(annotation.updated_at), valid=valid, message=message,
    )
    session.add(row)
    session.flush()
    return row


def apply_annotation(session: Session, settings: Settings, task: Task, annotation, report: SyncReport) -> None:
    """Turn one Label Studio annotation into a decision, state moves and a mask version (at most once)."""
    previous = _decision_seen(session, annotation)
    if previous is not None and previous.ls_updated_at == str(annotation.updated_at):
        report.skipped += 1
        return
    image = session.get(Image, task.image_id)
    if image is None:
        raise AnnotatorError(f"task {task.ls_task_id} names image {task.image_id}, which the store no longer has")
    role = QUEUE_ROLES[task.queue]
    if not annotation.valid:
        if previous is None or previous.message != annotation.message:
            _record(session, task, annotation, annotation.decision or "none", role, valid=False, message=annotation.message)
            report.quarantined.append(f"image {image.id} (task {task.ls_task_id}, annotation "
                                      f"{annotation.ls_annotation_id}): {annotation.message}")
        return
    if previous is not None and _applied(session, annotation):  # edited after it was synced: the newer one wins
        if image.state not in protocol.REOPENABLE:
            report.invalid.append(f"image {image.id}: decision edited after sync, but the image moved on "
                                  f"(state {image.state}); the edit is recorded, not applied")
            _record(session, task, annotation, annotation.decision, role, valid=False,
                    message=f"edited after the image reached {image.state}")
            return
        engine.move(session, image, "reopen", actor=annotation.annotator or "unknown", role="system",
                    round_id=task.round_id, model_version=task.model_version)
        report.edited += 1
    decision = _record(session, task, annotation, annotation.decision, role)
    actor = annotation.annotator or "unknown"
    kw = {"actor": actor, "role": role, "round_id": task.round_id, "model_version": task.model_version}
    handler = HANDLERS.get((task.queue, annotation.decision))
    if handler is None:
        raise ProtocolError(f"image {image.id}: decision {annotation.decision!r} has no meaning in queue {task.queue}")
    handler(session, settings, task, image, annotation, decision, kw, report)
    task.status = "done"
    report.count(f"{task.queue}:{annotation.decision}")


