"""What the store holds: counts by class, dataset, mask kind and origin, protocol state."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotator.model_registry import working_model
from db.models import Decision, Image, Mask, Model, Round


def _counts(session: Session, column, *where) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(*where).group_by(column)).all()
    return {str(key) if key is not None else "unknown": int(n) for key, n in rows}


def collect_status(session: Session) -> dict:
    """A JSON-ready report. ``masks`` counts images having a mask of each kind (any version)."""
    images = session.scalar(select(func.count(Image.id))) or 0
    masks_by_kind = {
        kind: session.scalar(select(func.count(func.distinct(Mask.image_id))).where(Mask.kind == kind)) or 0
        for kind in ("lung", "infection")
    }
    versions = _counts(session, Mask.kind)
    # the origin of each image's current (highest) lung mask
    latest = (
        select(Mask.image_id, func.max(Mask.version).label("v")).where(Mask.kind == "lung").group_by(Mask.image_id)
    ).subquery()
    current_origin = dict(
        session.execute(
            select(Mask.origin, func.count())
            .join(latest, (Mask.image_id == latest.c.image_id) & (Mask.version == latest.c.v))
            .where(Mask.kind == "lung")
            .group_by(Mask.origin)
        ).all()
    )
    working = working_model(session, "lung")
    return {
        "images": int(images),
        "masks": {k: int(v) for k, v in masks_by_kind.items()},
        "mask_versions": versions,
        "masks_by_origin": {
            kind: _counts(session, Mask.origin, Mask.kind == kind) for kind in ("lung", "infection")
        },
        "lung_masks_current_origin": {str(k): int(v) for k, v in current_origin.items()},
        "by_class": _counts(session, Image.cls),
        "by_dataset": _counts(session, Image.dataset),
        "by_state": _counts(session, Image.state),
        "by_resolution": _counts(session, Image.resolution_bin),
        "decisions": _counts(session, Decision.decision),
        "rounds": {"open": session.scalar(select(func.count(Round.id)).where(Round.status == "open")) or 0,
                   "closed": session.scalar(select(func.count(Round.id)).where(Round.status == "closed")) or 0},
        "models": session.scalar(select(func.count(Model.id))) or 0,
        "working_model": working.model_version if working else None,
    }
