"""The gateway between the protocol's tasks (``tasks`` rows) and Label Studio's projects: push what is
not pushed yet, read back what people decided. Both are idempotent (our key in the task data, decisions
keyed by annotation id and update time), so any of them can be re-run after a crash."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.labelstudio.tasks import TaskIn, task_key
from annotator.labelstudio.queue import Queue, get_queue
from annotator.progress import progress_bar, track
from annotator.store import image_file, read_mask_by_id
from db.engine import session_scope
from db.models import Image, Task
from workflows import double_read
from workflows.decisions import SyncReport, apply_annotation
from workflows.quarantine import apply_isolated

log = logging.getLogger(__name__)

QUEUE_ORDER: tuple[Queue, ...] = tuple(Queue)


def _task_in(settings: Settings, session: Session, task: Task) -> TaskIn:
    image = session.get(Image, task.image_id)
    payload = task.payload or {}
    # best-of-six tasks show a pre-rendered grid instead of the image itself
    image_path = image_file(settings, image)
    if "image_path" in payload:
        image_path = settings.workspace_path / payload["image_path"]
    mask = None
    # a queue with a brush shows the prediction (or current) mask as a brush prediction
    if get_queue(task.queue).has_brush and payload.get("mask_id"):
        mask = read_mask_by_id(session, settings, payload["mask_id"])
    extra = {k: payload[k] for k in ("qc", "ra_case", "advice") if k in payload}
    if task.queue == Queue.MD_ADVICE:
        extra.setdefault("ra_case", "")
    if task.queue == Queue.RA_ADJUST:
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
    project_id = ls.ensure_project(queue, double_read_share=double_read.share(session, settings, queue))
    with progress_bar(f"pushing {queue} tasks", total=len(pending), enabled=progress, unit="tasks") as bar:
        result = ls.import_tasks(project_id, [_task_in(settings, session, t) for t in pending], progress=bar.advance)
    crash_point("push.after_import")
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


def each_persons_latest(annotations: list) -> list:
    """Every task's annotations, the newest of each person (a person may have submitted twice; two people
    may both have: an RA in an MD queue, a double read), by task and then oldest first."""
    best: dict[tuple[int, object], object] = {}
    for a in annotations:
        who = a.ls_user_id if getattr(a, "ls_user_id", None) is not None else a.annotator
        old = best.get((a.ls_task_id, who))
        if old is None or (str(a.updated_at or ""), a.ls_annotation_id) > (str(old.updated_at or ""), old.ls_annotation_id):
            best[(a.ls_task_id, who)] = a
    return sorted(best.values(), key=lambda a: (a.ls_task_id, str(a.updated_at or ""), a.ls_annotation_id))


def sync(session: Session, settings: Settings, ls, queue: str, apply: Callable, report, progress: bool = True) -> None:
    """Read back every annotation of ``queue``'s project and hand each person's newest of each task to
    ``apply`` (which records it once), each in a savepoint of its own: a malformed one is quarantined, the
    others are applied."""
    project_ids = set(session.scalars(select(Task.ls_project_id).where(Task.queue == queue,
                                                                        Task.ls_project_id.is_not(None))))
    for project_id in sorted(project_ids):
        by_task = {t.ls_task_id: t for t in session.scalars(select(Task).where(Task.ls_project_id == project_id,
                                                                                Task.queue == queue))}
        annotations, pairs = each_persons_latest(ls.fetch_annotations(project_id)), []
        if queue == double_read.QUEUE:
            annotations, pairs = double_read.split(session, ls, project_id, by_task, annotations, report)
        for annotation in track(annotations, f"syncing {queue}", enabled=progress, unit="annotations"):
            task = by_task.get(annotation.ls_task_id)
            if task is None:
                continue  # a task someone added by hand in Label Studio: not ours
            apply_isolated(session, settings, task, annotation, apply, report)
            crash_point("sync.after_decision")
        for first, second in pairs:  # two RAs' readings of one task, applied together
            apply_isolated(session, settings, by_task[first.ls_task_id], first,
                           functools.partial(double_read.apply_pair, second=second), report)


def push_queue(settings: Settings, ls, queue: str, progress: bool = True) -> dict:
    """``push`` in a transaction of its own (an entry point's boundary)."""
    with session_scope(settings.database_url) as session:
        return push(session, settings, ls, queue, progress)


def sync_queues(settings: Settings, ls, queues: tuple[str, ...], progress: bool = True) -> dict:
    """Read back ``queues`` in one transaction; returns the SyncReport as a dict."""
    report = SyncReport()
    with session_scope(settings.database_url) as session:
        for queue in queues:
            sync(session, settings, ls, queue, apply_annotation, report, progress)
    return report.as_dict()
