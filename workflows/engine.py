"""The only code that moves an image between protocol states; each move appends a history row."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.errors import ProtocolError
from db.models import Image, Transition
from workflows import protocol


def move(session: Session, image: Image, event: str, *, actor: str, role: str, round_id: int | None = None,
         model_version: str | None = None) -> Transition:
    """Apply ``event`` to ``image``: check it (legal from the image's state, and ``role`` one of those the
    event admits), change the state column, append the history row."""
    target = protocol.next_state(image.state, event, image.id)
    allowed = protocol.get_event(event).roles
    if role not in allowed:
        raise ProtocolError(f"image {image.id} ({image.state}): {actor} as {role} may not cause {event!r}; only "
                            f"{' or '.join(sorted(allowed))} may")
    row = Transition(image_id=image.id, event=event, from_state=image.state, to_state=target, actor=actor,
                     role=role, round_id=round_id, model_version=model_version)
    image.state = target
    session.add(row)
    session.flush()
    return row


def history(session: Session, image_id: int) -> list[Transition]:
    return list(session.scalars(select(Transition).where(Transition.image_id == image_id).order_by(Transition.id)))


def replay_image(session: Session, image: Image) -> str:
    """Replay the stored history; raises ProtocolError when it is illegal or disagrees with the state column."""
    rows = history(session, image.id)
    state = protocol.INITIAL
    for row in rows:
        if row.from_state != state:
            raise ProtocolError(f"image {image.id}: history row {row.id} starts in {row.from_state!r}, expected {state!r}")
        state = protocol.next_state(state, row.event, image.id)
        if state != row.to_state:
            raise ProtocolError(f"image {image.id}: history row {row.id} ends in {row.to_state!r}, replay gives {state!r}")
    if state != image.state:
        raise ProtocolError(f"image {image.id}: state column says {image.state!r}, history replays to {state!r}")
    return state


def replay_all(session: Session) -> dict[str, int]:
    """Replay every image; returns counts by final state (raises on the first inconsistency)."""
    counts: dict[str, int] = {}
    for image in session.scalars(select(Image).order_by(Image.id)):
        state = replay_image(session, image)
        counts[state] = counts.get(state, 0) + 1
    return counts
