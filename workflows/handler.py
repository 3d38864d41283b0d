"""What a decision handler is, and what handlers share: the contract apart from the handlers themselves.

A ``Handler`` gives one (queue, decision) pair its meaning: the protocol events it causes, in order, and
the function that causes them (and records the mask version). Each stage module exports a tuple of the
handlers of its queues; ``workflows.decisions`` builds the one table from them and checks it at import.
Nothing here imports a stage module or ``decisions``, so the stages stand on it without a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.labelstudio.queue import Queue
from db.models import Task

# (session, settings, task, image, annotation, decision row, move keywords, report) -> None
Apply = Callable[..., None]


@dataclass(frozen=True)
class Handler:
    queue: Queue
    decision: str  # a choice of the queue's label config
    events: tuple[str, ...]  # the protocol events it causes, in order (checked at import)
    apply: Apply

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.queue), self.decision)


@dataclass
class SyncReport:
    recorded: dict[str, int] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)  # not applied: the annotation is malformed
    invalid: list[str] = field(default_factory=list)  # not applied: the protocol cannot take it now
    refused: list[str] = field(default_factory=list)  # not applied: its author may not decide in this queue
    awaiting_second_read: int = 0  # double-read tasks one RA has read so far
    edited: int = 0
    skipped: int = 0
    new_tasks: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.recorded[what] = self.recorded.get(what, 0) + 1

    def as_dict(self) -> dict:
        return {"recorded": self.recorded, "quarantined": self.quarantined, "invalid": self.invalid,
                "refused": self.refused, "awaiting_second_read": self.awaiting_second_read, "edited": self.edited,
                "skipped": self.skipped, "new_tasks": self.new_tasks}


def new_task(session: Session, parent: Task, queue: Queue, payload: dict, report: SyncReport) -> None:
    """A follow-up task (MD advice after unsure, RA adjust after advice), once."""
    exists = session.scalar(select(Task.id).where(Task.image_id == parent.image_id, Task.round_id == parent.round_id,
                                                  Task.queue == queue))
    if exists is None:
        session.add(Task(image_id=parent.image_id, round_id=parent.round_id, queue=queue,
                         model_version=parent.model_version, status="open", payload=payload))
        report.new_tasks[str(queue)] = report.new_tasks.get(str(queue), 0) + 1
        session.flush()
