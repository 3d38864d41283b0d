"""The model registry: the networks a workspace has published, each its checkpoint file
(``models/<model_version>.pt``), the ONNX graph verified beside it (``.onnx``), its ``models`` row and, for
one network per task, the working mark. The one module that writes them and the one query of the working
network: Stage I, the rounds, Stage III, ``model train``, the recognition pipeline and the ML backend
all stand on it, so none of them borrows another's helpers.

Light (no torch): a trained checkpoint is copied, not loaded. Its ONNX graph is the one training
exported and verified against fp32 (``TrainConfig.verify_fast_paths``); a checkpoint trained without
that check is published without one, and the fast ONNX path refuses it until it is verified.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.durability import copy_durably
from annotator.errors import ModelError
from db.models import Model

log = logging.getLogger(__name__)


class Trained(Protocol):
    """What a training run hands over (``segmentation.train.TrainResult`` is one)."""

    checkpoint_path: Path
    model_version: str
    metrics: dict


def checkpoint_file(workspace_path: Path, model: Model) -> Path:
    """The checkpoint of a registered network (rows hold paths relative to the workspace)."""
    return Path(workspace_path) / model.checkpoint_path


def working_model(session: Session, task: str = "lung") -> Model | None:
    """The working network of ``task`` (the newest marked one, should a crash have left two)."""
    return session.scalar(
        select(Model).where(Model.is_working.is_(True), Model.task == task).order_by(Model.id.desc()).limit(1)
    )


def register(session: Session, *, model_version: str, spec: str, preset: str | None, checkpoint_path: str,
             metrics: dict, snapshot: dict, stage: str | None, task: str = "lung",
             parent_version: str | None = None) -> Model:
    """Insert the Model row, or refresh it when the same weights (same model_version) were trained again."""
    row = session.scalar(select(Model).where(Model.model_version == model_version))
    if row is None:
        row = Model(model_version=model_version, task=task, is_working=False)
        session.add(row)
    row.spec, row.preset, row.checkpoint_path, row.metrics = spec, preset, checkpoint_path, metrics
    row.training_snapshot, row.stage, row.parent_version = snapshot, stage, parent_version
    session.flush()
    return row


def mark_working(session: Session, model: Model) -> None:
    """``model`` becomes its task's working network; the previous one is unmarked."""
    session.execute(update(Model).where(Model.task == model.task, Model.id != model.id).values(is_working=False))
    model.is_working = True
    session.flush()


def _copy(src: Path, dest: Path) -> None:
    """Copied aside, fsynced and renamed: a crash never leaves a torn file under ``dest``'s name."""
    if src.resolve() == dest.resolve():
        return
    copy_durably(src, dest)


def publish(session: Session, settings: Settings, trained: Trained, *, spec: str, preset: str | None,
            snapshot: dict, stage: str, metrics: dict | None = None, parent_version: str | None = None,
            task: str = "lung", make_working: bool = False) -> Model:
    """Copy the checkpoint (and its verified ONNX graph) into ``models/``, register it, and with
    ``make_working`` mark it the working network. Safe to run again: the files are replaced atomically
    and the row is refreshed."""
    source = Path(trained.checkpoint_path)
    if not source.is_file():
        raise ModelError(f"cannot publish {trained.model_version}: {source} is not a file")
    settings.models_path.mkdir(parents=True, exist_ok=True)
    final = settings.models_path / f"{trained.model_version}.pt"
    _copy(source, final)
    onnx = source.with_name(f"{trained.model_version}.onnx")
    if onnx.is_file():
        _copy(onnx, final.with_suffix(".onnx"))
    row = register(session, model_version=trained.model_version, spec=spec, preset=preset,
                   checkpoint_path=str(final.relative_to(settings.workspace_path)),
                   metrics=trained.metrics if metrics is None else metrics, snapshot=snapshot, stage=stage,
                   task=task, parent_version=parent_version)
    if make_working:
        mark_working(session, row)
    log.info("published %s (%s)%s", row.model_version, stage, " as the working network" if make_working else "")
    return row


def resolve_checkpoint(session: Session | None, settings: Settings, ref: str) -> Path:
    """'working', a registered model_version, or a checkpoint file -> the checkpoint's path."""
    path = Path(ref).expanduser()
    if path.suffix == ".pt" and path.is_file():
        return path
    if session is None:
        raise ModelError(f"{ref!r} is not a checkpoint file, and there is no workspace to look it up in")
    if ref == "working":
        row = working_model(session)
        if row is None:
            raise ModelError("no working lung network yet; run `annotator stage1 run` first")
    else:
        row = session.scalar(select(Model).where(Model.model_version == ref))
        if row is None:
            known = session.scalars(select(Model.model_version).order_by(Model.id)).all()
            raise ModelError(f"unknown model {ref!r}; use 'working', a checkpoint file, or one of: "
                             f"{', '.join(known) or '(none registered)'}")
    return checkpoint_file(settings.workspace_path, row)
