"""Declarative models. Every mask, decision and model version is kept so each mask can be traced."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

MASK_KINDS = ("lung", "infection")
MASK_ORIGINS = ("seed", "model", "ra_accepted", "ra_edited", "md_adjusted", "md_verified", "md_corrected")
ROLES = ("RA", "MD", "system")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# column declarations the tables share (SQLAlchemy 2.0: a type alias carries its mapped_column)
IntPk = Annotated[int, mapped_column(primary_key=True)]
CreatedAt = Annotated[datetime, mapped_column(DateTime(timezone=True), default=utcnow)]
ModelVersion = Annotated[str | None, mapped_column(String(128))]
LsId = Annotated[int | None, mapped_column(Integer)]  # a Label Studio id
ImageRef = Annotated[int, mapped_column(ForeignKey("images.id"), index=True)]
RoundRef = Annotated[int | None, mapped_column(ForeignKey("rounds.id"))]


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class Image(Base):
    __tablename__ = "images"

    id: Mapped[IntPk]
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    store_path: Mapped[str] = mapped_column(String(512))  # relative to the workspace
    file_name: Mapped[str] = mapped_column(String(512))  # the first name it was imported under
    cls: Mapped[str | None] = mapped_column("class", String(64), index=True)
    dataset: Mapped[str | None] = mapped_column(String(128), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(128))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bit_depth: Mapped[int] = mapped_column(Integer)
    view: Mapped[str | None] = mapped_column(String(32))
    resolution_bin: Mapped[str] = mapped_column(String(16), index=True)
    contrast: Mapped[float] = mapped_column(Float)
    snr: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(32), default="pool", index=True)
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)  # severity scores, finding, licence...
    created_at: Mapped[CreatedAt]

    sources: Mapped[list[ImageSource]] = relationship(back_populates="image", cascade="all, delete-orphan")
    masks: Mapped[list[Mask]] = relationship(back_populates="image", cascade="all, delete-orphan")


class ImageSource(Base):
    """Every name an image was imported under (the same content under two names is one image)."""

    __tablename__ = "image_sources"
    __table_args__ = (UniqueConstraint("image_id", "original_path"),)

    id: Mapped[IntPk]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    original_path: Mapped[str] = mapped_column(String(1024))
    layout: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[CreatedAt]

    image: Mapped[Image] = relationship(back_populates="sources")


class Mask(Base):
    """One version of one kind of mask of one image; the highest version is the current one."""

    __tablename__ = "masks"
    __table_args__ = (UniqueConstraint("image_id", "kind", "version"),)

    id: Mapped[IntPk]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16), index=True)
    model_version: Mapped[ModelVersion]
    author: Mapped[str | None] = mapped_column(String(128))
    store_path: Mapped[str] = mapped_column(String(512))
    file_hash: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), nullable=True)
    created_at: Mapped[CreatedAt]

    image: Mapped[Image] = relationship(back_populates="masks")


class Model(Base):
    """A trained network: its spec, checkpoint, metrics and the training-set snapshot it saw."""

    __tablename__ = "models"

    id: Mapped[IntPk]
    model_version: Mapped[str] = mapped_column(String(128), unique=True)
    task: Mapped[str] = mapped_column(String(32), default="lung")  # lung | infection | classifier
    spec: Mapped[str] = mapped_column(String(128))  # e.g. unet-resnet18
    preset: Mapped[str | None] = mapped_column(String(32))
    checkpoint_path: Mapped[str] = mapped_column(String(512))
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    training_snapshot: Mapped[dict] = mapped_column(JSON, default=dict)
    stage: Mapped[str | None] = mapped_column(String(16))  # stage1, round-3, stage3...
    is_working: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    parent_version: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[CreatedAt]
    pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # files dropped by `model prune`


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("stage", "number"),)

    id: Mapped[IntPk]
    stage: Mapped[int] = mapped_column(Integer)  # 2, 3 or 4
    number: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | closed
    model_version: Mapped[ModelVersion]
    ls_project_id: Mapped[LsId]
    summary: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[CreatedAt]
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Task(Base):
    """A Label Studio task we pushed: keyed by our ids so a re-run never pushes twice."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("image_id", "round_id", "queue"),
                      Index("ix_tasks_queue_status", "queue", "status"),  # a queue's open tasks (push, simulate)
                      Index("ix_tasks_project_queue", "ls_project_id", "queue"))  # a project's tasks (sync)

    id: Mapped[IntPk]
    image_id: Mapped[ImageRef]
    round_id: Mapped[RoundRef]
    queue: Mapped[str] = mapped_column(String(32))  # an annotator.labelstudio.queue.Queue value
    ls_project_id: Mapped[LsId]
    ls_task_id: Mapped[LsId]
    model_version: Mapped[ModelVersion]
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done | invalid
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[CreatedAt]


class Decision(Base):
    """One judgement of one image in one task: a person's (accept, reject, select, verified...) or the
    system's, with what was judged (model version) and its Label Studio ids. A Label Studio annotation
    version that could not be applied is kept quarantined (``valid`` false, ``message`` says why). Each
    (annotation id, update time) is read at most once, whoever syncs."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_ls_annotation", "ls_annotation_id"),
                      Index("uq_decisions_annotation_version", "ls_annotation_id", "ls_updated_at", unique=True))

    id: Mapped[IntPk]
    image_id: Mapped[ImageRef]
    round_id: Mapped[RoundRef]
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(8))
    decision: Mapped[str] = mapped_column(String(16), index=True)  # accept reject unsure exclude select deny verified ...
    detail: Mapped[str | None] = mapped_column(String(64))  # e.g. the selected network m3
    lead_time_s: Mapped[float | None] = mapped_column(Float)
    comment: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[ModelVersion]  # of the prediction judged
    ls_project_id: Mapped[LsId]
    ls_task_id: Mapped[LsId]
    ls_annotation_id: Mapped[LsId]
    ls_prediction_id: Mapped[LsId]
    ls_updated_at: Mapped[str | None] = mapped_column(String(64))
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    message: Mapped[str | None] = mapped_column(Text)
    ls_user_id: Mapped[LsId]  # who made it in Label Studio (completed_by)
    # not applied because its author may not decide in this queue (not in the team, deactivated, other role)
    refused: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # on a task two RAs read: the Dice score between the two readers' final masks (on both rows)
    pair_dsc: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[CreatedAt]


class Transition(Base):
    """Append-only history of every state change of every image."""

    __tablename__ = "transitions"

    id: Mapped[IntPk]
    image_id: Mapped[ImageRef]
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(8))
    round_id: Mapped[RoundRef]
    model_version: Mapped[ModelVersion]
    created_at: Mapped[CreatedAt]


class Person(Base):
    """A member of the campaign's team: an RA or an MD with a Label Studio account of their own. Only their
    Label Studio user id is kept, never a password or a token; a deactivated person stays (their decisions
    name them) but their annotations are no longer applied."""

    __tablename__ = "people"

    id: Mapped[IntPk]
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower-case
    name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(8))  # RA | MD
    ls_user_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[CreatedAt]
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SplitMember(Base):
    __tablename__ = "splits"
    __table_args__ = (UniqueConstraint("image_id", "name"),)

    id: Mapped[IntPk]
    image_id: Mapped[ImageRef]
    name: Mapped[str] = mapped_column(String(32))  # a split scheme, e.g. "protocol" or "stage1"
    split: Mapped[str] = mapped_column(String(16))  # train | val | test
    created_at: Mapped[CreatedAt]
