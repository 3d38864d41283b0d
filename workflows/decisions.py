"""Turning Label Studio annotations into protocol decisions: one table of handlers, keyed by (queue,
decision), built here from what each stage module exports and checked at import against every queue's
label config choices and the protocol's events and roles; each annotation is recorded at most once (by
its annotation id and update time), and an edit after a sync re-opens the image so the newer one wins."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import AnnotatorError, ProtocolError
from annotator.labelstudio.queue import QUEUES, Queue, get_queue
from db.models import Decision, Image, Task
from workflows import engine, protocol, stage2, stage3, stage4
from workflows.handler import Handler, SyncReport
from workflows.people import Attribution, attribute

__all__ = ["HANDLERS", "SyncReport", "apply_annotation", "build_table", "check_table", "record_decision"]


def build_table(handlers: Iterable[Handler]) -> dict[tuple[str, str], Handler]:
    """(queue, decision) -> handler; a pair given twice is an error."""
    table: dict[tuple[str, str], Handler] = {}
    for handler in handlers:
        if handler.key in table:
            raise ProtocolError(f"two handlers for decision {handler.decision!r} in queue {handler.queue}")
        table[handler.key] = handler
    return table


def _legal_from_somewhere(events: tuple[str, ...]) -> bool:
    for start in sorted(protocol.get_event(events[0]).sources):
        try:
            protocol.replay(list(events), start=start)
        except ProtocolError:
            continue
        return True
    return False


def check_table(table: dict[tuple[str, str], Handler], queues: Iterable[Queue] = Queue) -> None:
    """Every choice each queue's label config offers has a handler and every handler a choice; the
    queue's spec lists the same decisions; each handler's events exist, admit the queue's role and
    follow one another legally; every event a person causes is caused by some handler."""
    problems: list[str] = []
    for queue in queues:
        spec = get_queue(queue)
        if spec.role not in protocol.PEOPLE:
            problems.append(f"queue {queue}: role {spec.role!r} is not one of {sorted(protocol.PEOPLE)}")
        offered = set(spec.choices)
        handled = {d for q, d in table if q == queue}
        if offered - handled:
            problems.append(f"queue {queue} offers {sorted(offered - handled)} but no handler takes them: add "
                            f"a handler or remove the choice from {spec.name}.xml")
        if handled - offered:
            problems.append(f"queue {queue} has handlers for {sorted(handled - offered)}, which its label "
                            "config does not offer")
        if set(spec.decisions) != offered:
            problems.append(f"queue {queue}: the spec's decisions {list(spec.decisions)} differ from its label "
                            f"config's choices {list(spec.choices)}")
    for (queue, decision), handler in sorted(table.items()):
        if queue not in QUEUES:
            problems.append(f"handler for {decision!r} names unknown queue {queue!r}")
            continue
        role = get_queue(queue).role
        unknown = [e for e in handler.events if e not in protocol.EVENTS]
        if not handler.events or unknown:
            problems.append(f"{queue}:{decision} names unknown events {unknown or '(none)'}; valid: "
                            f"{', '.join(protocol.EVENTS)}")
            continue
        for event in handler.events:
            if role not in protocol.EVENTS[event].roles:
                problems.append(f"{queue}:{decision} causes {event!r}, which a {role} may not (only "
                                f"{sorted(protocol.EVENTS[event].roles)})")
        if not _legal_from_somewhere(handler.events):
            problems.append(f"{queue}:{decision}: events {list(handler.events)} cannot follow one another")
    caused = {e for h in table.values() for e in h.events}
    for name, event in protocol.EVENTS.items():
        if event.roles & protocol.PEOPLE and name not in caused:
            problems.append(f"event {name!r} is caused by people ({sorted(event.roles)}) but by no handler")
    if problems:
        raise ProtocolError("the decision handlers do not match the queues and the protocol:\n  "
                            + "\n  ".join(problems))


HANDLERS: dict[tuple[str, str], Handler] = build_table((*stage2.HANDLERS, *stage3.HANDLERS, *stage4.HANDLERS))
check_table(HANDLERS)


def _decision_seen(session: Session, annotation) -> Decision | None:
    return session.scalar(select(Decision).where(Decision.ls_annotation_id == annotation.ls_annotation_id)
                          .order_by(Decision.id.desc()).limit(1))


def _applied(session: Session, annotation) -> bool:
    """Was an earlier version of this annotation applied (a later one may have been quarantined since)?"""
    return session.scalar(select(Decision.id).where(Decision.ls_annotation_id == annotation.ls_annotation_id,
                                                    Decision.valid.is_(True)).limit(1)) is not None


def record_decision(session: Session, task: Task, annotation, decision: str, who: Attribution, valid: bool = True,
                    message: str | None = None, detail: str | None = None) -> Decision:
    """One decision row: who (their Label Studio user, their role), what, on which task, and whether it was
    applied; a refused one (``who.refusal``) is kept as not valid."""
    row = Decision(
        image_id=task.image_id, round_id=task.round_id, task_id=task.id, actor=who.actor, role=who.role,
        decision=decision, detail=detail, lead_time_s=annotation.lead_time_s, comment=annotation.comment,
        model_version=task.model_version, ls_project_id=task.ls_project_id, ls_task_id=task.ls_task_id,
        ls_annotation_id=annotation.ls_annotation_id, ls_prediction_id=getattr(annotation, "ls_prediction_id", None),
        ls_updated_at=str(annotation.updated_at), valid=valid, message=message, ls_user_id=who.ls_user_id,
        refused=who.refusal is not None,
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
    who = attribute(session, task.queue, get_queue(task.queue).role, annotation)
    if who.refusal is not None:  # not theirs to decide: recorded, not applied; the task stays open
        record_decision(session, task, annotation, annotation.decision or "none", who, valid=False,
                        message=who.refusal)
        report.refused.append(f"image {image.id} (task {task.ls_task_id}, annotation {annotation.ls_annotation_id}): "
                              f"{who.refusal}")
        return
    if not annotation.valid:
        if previous is None or previous.message != annotation.message:
            record_decision(session, task, annotation, annotation.decision or "none", who, valid=False,
                            message=annotation.message)
            report.quarantined.append(f"image {image.id} (task {task.ls_task_id}, annotation "
                                      f"{annotation.ls_annotation_id}): {annotation.message}")
        return
    if previous is not None and _applied(session, annotation):  # edited after it was synced: the newer one wins
        if image.state not in protocol.REOPENABLE:
            report.invalid.append(f"image {image.id}: decision edited after sync, but the image moved on "
                                  f"(state {image.state}); the edit is recorded, not applied")
            record_decision(session, task, annotation, annotation.decision, who, valid=False,
                            message=f"edited after the image reached {image.state}")
            return
        engine.move(session, image, "reopen", actor=who.actor, role="system", round_id=task.round_id,
                    model_version=task.model_version)
        report.edited += 1
    decision = record_decision(session, task, annotation, annotation.decision, who)
    kw = {"actor": who.actor, "role": who.role, "round_id": task.round_id, "model_version": task.model_version}
    handler = HANDLERS.get((task.queue, annotation.decision))
    if handler is None:
        raise ProtocolError(f"image {image.id}: decision {annotation.decision!r} has no meaning in queue {task.queue}")
    handler.apply(session, settings, task, image, annotation, decision, kw, report)
    task.status = "done"
    report.count(f"{task.queue}:{annotation.decision}")


