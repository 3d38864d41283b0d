"""Query functions shared by the workflows (no commits here: the boundary commits)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Image, Mask


def current_mask(session: Session, image_id: int, kind: str = "lung") -> Mask | None:
    """The highest version of an image's mask of this kind."""
    return session.scalar(
        select(Mask).where(Mask.image_id == image_id, Mask.kind == kind).order_by(Mask.version.desc()).limit(1)
    )


def reference_mask(session: Session, image_id: int, kind: str = "lung") -> Mask | None:
    """The mask an image came with (origin ``seed``, first version): the simulator's ground truth."""
    return session.scalar(
        select(Mask).where(Mask.image_id == image_id, Mask.kind == kind, Mask.origin == "seed")
        .order_by(Mask.version).limit(1)
    )


def images_in_states(session: Session, states: Iterable[str]) -> list[Image]:
    return list(session.scalars(select(Image).where(Image.state.in_(list(states))).order_by(Image.id)))


def count_in_states(session: Session, states: Iterable[str]) -> int:
    return session.scalar(select(func.count(Image.id)).where(Image.state.in_(list(states)))) or 0

