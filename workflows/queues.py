"""The gateway between the protocol's tasks (``tasks`` rows) and Label Studio's projects: push what is
not pushed yet, read back what people decided. Both are idempotent (our key in the task data, decisions
keyed by annotation id and update time), so any of them can be re-run after a crash."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.imaging.io import read_mask
from annotator.progress import progress_bar, track
from db.engine import session_scope
from db.models import Image, Mask, Task
from workflows.quarantine import apply_isolated

log = logging.getLogger(__name__)

QUEUE_ORDER = ("ra_review", "md_advice", "ra_adjust", "best_of_six", "md_verify")
# what each queue shows besides the image: the prediction (or current) mask as a brush prediction
SHOWS_MASK = {"ra_review": True, "md_advice": True, "ra_adjust": True, "best_of_six": False, "md_verify": True}


def _task_in(settings: Settings, session: Session, task: Task):
    from annotator.labelstudio.tasks import TaskIn

    image = session.get(Image, task.image_id)
    payload = task.payload or {}
    image_path = settings.workspace_path / payload.get("image_path", image.store_path)
    mask = None
    if SHOWS_MASK[task.queue] and payload.get("mask_id"):
        row = session.get(Mask, payload["mask_id"])
        mask = read_mask(settings.workspace_path / row.store_path, (image.height, image.width))
    extra = {k: payload[k] for k in ("qc", "ra_case", "advice") if k in payload}
    if task.queue == "md_advice":
        extra.setdefault("ra_case", "")
    if task.queue == "ra_adjust":
        extra.setdefault("advice", "")
    return TaskIn(image_id=image.id, queue=task.queue, image_path=image_path, round_id=task.round_id,
                  prediction_mask=mask, model_version=task.model_version or "none" if mask is not None else None,
                  score=payload.get("score"), extra=extra)


def push(session: Session, settings: Settings, ls, queue: str, progress: bool = True) -> dict:
    """Push the open tasks of ``queue`` that Label Studio does not have yet; record their ids."""
    pending = list(session.scalars(select(Task).where(Task.queue == queue, Task.status == "open",
                                                      Task.ls_task_id.is_(None)).order_by(Task.id)))
    if not pending:
        return {"queue": queue, "pushed": 0, "failed": {}}
    project_id = ls.ensure_project(queue)
    with progress_bar(f"pushing {queue} tasks", total=len(pending), enabled=progress, unit="tasks") as bar:
        result = ls.import_tasks(project_id, [_task_in(settings, session, t) for t in pending], progress=bar.advance)
    crash_point("push.after_import")
    from annotator.labelstudio.tasks import task_key

    for task in pending:
        key = task_key(task.queue, task.round_id, task.image_id)
        if key in result.task_ids:
            task.ls_project_id = project_id
            task.ls_task_id = result.task_ids[key]
        elif key in result.failed:
            task.status = "invalid"
            task.payload = {**task.payload, "push_error": result.failed[key]}
    session.flush()
    return {"queue": queue, "project_id": project_id, "pushed": len(result.task_ids), "created": result.created,
            "failed": result.failed}


def latest_annotations(annotations: list) -> dict[int, object]:
    """The newest annotation of each task (a person may have submitted twice)."""
    best: dict[int, object] = {}
    for a in annotations:
        old = best.get(a.ls_task_id)
        if old is None or (str(a.updated_at or ""), a.ls_annotation_id) > (str(old.updated_at or ""), old.ls_annotation_id):
            best[a.ls_task_id] = a
    return best


def sync(session: Session, settings: Settings, ls, queue: str, apply: Callable, report, progress: bool = True) -> None:
    """Read back every annotation of ``queue``'s project and hand each to ``apply`` (which records it once),
    each in a savepoint of its own: a malformed one is quarantined, the others are applied."""
    project_ids = set(session.scalars(select(Task.ls_project_id).where(Task.queue == queue,
                                                                        Task.ls_project_id.is_not(None))))
    for project_id in sorted(project_ids):
        by_task = {t.ls_task_id: t for t in session.scalars(select(Task).where(Task.ls_project_id == project_id,
                                                                                Task.queue == queue))}
        latest = sorted(latest_annotations(ls.fetch_annotations(project_id)).items())
        for ls_task_id, annotation in track(latest, f"syncing {queue}", enabled=progress, unit="annotations"):
            task = by_task.get(ls_task_id)
            if task is None:
                continue  # a task someone added by hand in Label Studio: not ours
            apply_isolated(session, settings, task, annotation, apply, report)
            crash_point("sync.after_decision")


def push_queue(settings: Settings, ls, queue: str, progress: bool = True) -> dict:
    """``push`` in a transaction of its own (an entry point's boundary)."""
    with session_scope(settings.database_url) as session:
        return push(session, settings, ls, queue, progress)


def sync_queues(settings: Settings, ls, queues: tuple[str, ...], progress: bool = True) -> dict:
    """Read back ``queues`` in one transaction; returns the SyncReport as a dict."""
    from workflows.decisions import SyncReport, apply_annotation, load_handlers

    load_handlers()
    report = SyncReport()
    with session_scope(settings.database_url) as session:
        for queue in queues:
            sync(session, settings, ls, queue, apply_annotation, report, progress)
    return report.as_dict()
