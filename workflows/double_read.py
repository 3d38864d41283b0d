"""Double reads: a share of the RA review tasks (``double_read_share``, default 10%) is read by two RAs.

Label Studio chooses them: the RA review project wants two annotations (``maximum_annotations`` 2) on
``overlap_cohort_percentage`` of its tasks, re-drawn at each import among the tasks not yet finished, and
shows such a task to a second annotator. The sync waits for two RAs of the team; then

- they **agree** (the same decision, and where both have a mask, DSC >= 0.90): the first reading is applied
  as any single one, the second is recorded beside it;
- they **disagree** (another decision, or masks under DSC 0.90): both are recorded, and the case goes to
  the MD queue as an unsure one does (the ``doubt`` event, an MD advice task saying what each RA decided).

Both rows carry the DSC between the two masks (``pair_dsc``), which ``workflows.agreement`` reports with
Cohen's kappa per round and RA pair. Without a team (one operator) there is no second reader: the
overlap is ignored.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.evaluation.metrics import dice
from annotator.labelstudio.queue import Queue
from db.models import Decision, Image, Task
from workflows import engine
from workflows.agreement import DISAGREE_DSC
from workflows.handler import new_task
from workflows.people import attribute, has_team

QUEUE = Queue.RA_REVIEW


def share(session: Session, settings: Settings, queue: str) -> float:
    """The share of ``queue``'s tasks to read twice: ``double_read_share`` for RA review with a team, else 0."""
    return settings.double_read_share if queue == QUEUE and has_team(session) else 0.0


def task_overlaps(ls, project_id: int) -> dict[int, int]:
    """ls_task_id -> how many annotations Label Studio wants on it (its overlap)."""
    return {int(t["id"]): int(t.get("overlap") or 1) for t in ls.iter_tasks(project_id, fields="all")}


def final_mask(annotation) -> np.ndarray | None:
    """The mask a reading ends with: the one painted, else (accepting) the prediction; None when neither."""
    if annotation.mask is not None and annotation.mask.any():
        return annotation.mask
    return annotation.prediction_mask if annotation.decision == "accept" else None


def compare(first, second) -> tuple[bool, float | None, str]:
    """(agree, DSC of the two final masks or None, in words)."""
    a, b = final_mask(first), final_mask(second)
    dsc = float(dice(a > 0, b > 0)) if a is not None and b is not None and a.shape == b.shape else None
    agree = first.decision == second.decision and (dsc is None or dsc >= DISAGREE_DSC)
    said = f"{first.annotator} {first.decision}, {second.annotator} {second.decision}"
    return agree, dsc, said + (f", masks DSC {dsc:.2f}" if dsc is not None else "")


def readers(session: Session, annotations: list) -> list:
    """The annotations of one task made by RAs of the team who may read it, one per person, oldest first."""
    allowed = [a for a in annotations if a.valid and attribute(session, QUEUE, "RA", a).refusal is None]
    return sorted(allowed, key=lambda a: (str(a.updated_at or ""), a.ls_annotation_id))


def split(session: Session, ls, project_id: int, tasks: dict[int, Task], annotations: list,
          report) -> tuple[list, list]:
    """(annotations to apply one by one, pairs to apply together); a double-read task with one reader so
    far waits (``report.awaiting_second_read``). Without a team every annotation goes one by one."""
    if not has_team(session):
        return annotations, []
    overlaps = task_overlaps(ls, project_id)
    by_task: dict[int, list] = {}
    for a in annotations:
        by_task.setdefault(a.ls_task_id, []).append(a)
    single, pairs = [], []
    for ls_task_id, group in by_task.items():
        task = tasks.get(ls_task_id)
        if task is None or task.status != "open" or overlaps.get(ls_task_id, 1) < 2:
            single += group
            continue
        pair = readers(session, group)
        others = [a for a in group if all(a is not p for p in pair[:2])]
        single += others  # refused or malformed ones are recorded as such, one by one
        if len(pair) >= 2:
            pairs.append((pair[0], pair[1]))
        elif pair:
            report.awaiting_second_read += 1
    return single, pairs


def apply_pair(session: Session, settings: Settings, task: Task, first, report, *, second) -> None:
    """Apply two RAs' readings of one task (in the caller's savepoint): agreed -> the first is applied;
    disagreed -> the case goes to the MD queue."""
    from workflows.decisions import apply_annotation, record_decision

    seen = session.scalar(select(Decision.id).where(Decision.ls_annotation_id == second.ls_annotation_id,
                                                    Decision.ls_updated_at == str(second.updated_at)))
    if seen is not None:
        report.skipped += 1
        return
    agree, dsc, said = compare(first, second)
    who = attribute(session, QUEUE, "RA", second)
    if agree:
        apply_annotation(session, settings, task, first, report)
        record_decision(session, task, second, second.decision, who,
                        message=f"second read, agrees with annotation {first.ls_annotation_id}")
        report.count(f"{QUEUE}:double_read_agreed")
    else:
        image = session.get(Image, task.image_id)
        record_decision(session, task, first, first.decision, attribute(session, QUEUE, "RA", first),
                        message=f"double read disagrees ({said}): to the MD queue")
        record_decision(session, task, second, second.decision, who,
                        message=f"double read disagrees ({said}): to the MD queue")
        engine.move(session, image, "doubt", actor=f"{first.annotator} + {second.annotator}"[:128], role="RA",
                    round_id=task.round_id, model_version=task.model_version)
        payload = {"mask_id": task.payload["mask_id"], "qc": task.payload.get("qc", ""),
                   "ra_case": f"two RAs disagree: {said}"}
        new_task(session, task, Queue.MD_ADVICE, payload, report)
        task.status = "done"
        report.count(f"{QUEUE}:double_read_disagreed")
    for decision in session.scalars(select(Decision).where(Decision.task_id == task.id,
                                                           Decision.ls_annotation_id.in_([first.ls_annotation_id,
                                                                                          second.ls_annotation_id]))):
        decision.pair_dsc = dsc
    session.flush()
