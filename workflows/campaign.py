"""The campaign simulator: scripted RAs and MDs (``workflows.simulator``) work the open Label Studio tasks
through the real API, judging each prediction against the image's reference mask (the mask it was
imported with). Then the normal sync path reads their annotations back, exactly as for people."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.labelstudio.acting import submit_annotation
from annotator.labelstudio.queue import Queue
from annotator.progress import track
from annotator.store import read_mask_by_id, read_mask_of
from db.models import Image, Task
from db.queries import reference_mask
from workflows.simulator import ScriptedPeople

log = logging.getLogger(__name__)

VERIFY_DECISIONS = {"verified": "verified", "md_corrected": "corrected"}


@dataclass
class ActReport:
    acted: dict[str, int] = field(default_factory=dict)
    skipped_annotated: int = 0

    def count(self, what: str) -> None:
        self.acted[what] = self.acted.get(what, 0) + 1


def _truth(settings: Settings, session: Session, image: Image) -> np.ndarray | None:
    ref = reference_mask(session, image.id, "lung")
    return read_mask_of(settings, ref) if ref else None


def _verdict(settings: Settings, session: Session, queue: str, task: Task, image: Image, truth, people: ScriptedPeople):
    """What one scripted person submits on a task: (decision, mask, text, lead time)."""
    text = None
    mask = None
    if queue == Queue.RA_REVIEW:
        pred = read_mask_by_id(session, settings, task.payload["mask_id"])
        verdict = people.review(pred, truth)
        decision = verdict.decision
        mask = verdict.mask if verdict.mask is not None else (pred if decision == "accept" else None)
        text = {"unsure": f"unsure: DSC to reference {verdict.dsc:.2f}", "exclude": verdict.detail}.get(decision)
    elif queue == Queue.MD_ADVICE:
        pred = read_mask_by_id(session, settings, task.payload["mask_id"])
        verdict = people.advise(pred, truth)
        decision, text = "adjust", verdict.detail
    elif queue == Queue.RA_ADJUST:
        pred = read_mask_by_id(session, settings, task.payload["mask_id"])
        verdict = people.adjust(pred, truth)
        decision, mask = "adjusted", verdict.mask
    elif queue == Queue.BEST_OF_SIX:
        masks = [read_mask_by_id(session, settings, m) for m in task.payload["mask_ids"]]
        verdict = people.select(masks, truth)
        decision = verdict.detail if verdict.decision == "select" else "deny"
    elif queue == Queue.MD_VERIFY:
        current = read_mask_by_id(session, settings, task.payload["mask_id"])
        verdict = people.verify(current, truth)
        decision = VERIFY_DECISIONS[verdict.decision]
        mask = verdict.mask if verdict.mask is not None else current
    else:  # pragma: no cover - the queues are a closed set
        raise ValueError(queue)
    return decision, mask, text, verdict.lead_time_s


def _workers(ls, queue: str, task: Task, people, overlaps: dict[int, int],
             annotated: set[int]) -> list[tuple[object, ScriptedPeople, int | None]]:
    """(client, person, their Label Studio user id) of whoever works ``task``: the one operator, or the
    team's members in turn (two on a double read, and once an RA first in an MD queue, as scripted)."""
    from workflows.team_sim import ScriptedTeam

    if not isinstance(people, ScriptedTeam):
        return [(ls, people, None)]
    members = people.actors(queue, overlaps.get(task.ls_task_id, 1))
    intruder = None if task.ls_task_id in annotated else people.intruder(queue)
    return [(m.ls, m.people, m.ls_user_id) for m in ([intruder] if intruder else []) + members]


def act(session: Session, settings: Settings, ls, queue: str, people) -> ActReport:
    """Annotate every pushed, open task of ``queue`` that its people have not annotated yet in Label Studio.
    ``people``: one ``ScriptedPeople`` acting as the tool's own user, or a ``ScriptedTeam`` whose members
    act with their own accounts (``workflows.team_sim``)."""
    from workflows.double_read import task_overlaps
    from workflows.team_sim import ScriptedTeam

    report = ActReport()
    tasks = list(session.scalars(select(Task).where(Task.queue == queue, Task.status == "open",
                                                    Task.ls_task_id.is_not(None)).order_by(Task.id)))
    if not tasks:
        return report
    annotated: set[int] = set()
    done: set[tuple[int, int | None]] = set()
    overlaps: dict[int, int] = {}
    for project_id in sorted({t.ls_project_id for t in tasks}):
        outs = ls.fetch_annotations(project_id)
        annotated |= {a.ls_task_id for a in outs}
        done |= {(a.ls_task_id, a.ls_user_id) for a in outs}
        if isinstance(people, ScriptedTeam) and queue == Queue.RA_REVIEW:
            overlaps |= task_overlaps(ls, project_id)
    for task in track(tasks, f"simulated people: {queue}", unit="tasks"):
        workers = _workers(ls, queue, task, people, overlaps, annotated)
        if len(workers) == 1 and workers[0][2] is None and task.ls_task_id in annotated:
            report.skipped_annotated += 1  # acted before a crash, not yet synced: never twice
            continue
        image = session.get(Image, task.image_id)
        truth = _truth(settings, session, image)
        for client, person, ls_user_id in workers:
            if ls_user_id is not None and (task.ls_task_id, ls_user_id) in done:
                report.skipped_annotated += 1
                continue
            decision, mask, text, lead_time_s = _verdict(settings, session, queue, task, image, truth, person)
            submit_annotation(client, task.ls_task_id, queue, decision, mask=mask, text=text, lead_time_s=lead_time_s)
            report.count(decision)
    return report
