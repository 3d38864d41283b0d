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

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.durability import copy_durably, replace_durably
from annotator.errors import ModelError
from db.models import Decision, Mask, Model, Round, Task

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


def _place(src: Path, dest: Path) -> None:
    """``dest`` becomes ``src``'s file: a hard link where the file system allows it (no second copy on
    disk; training replaces its files by rename, so the published one never changes), else a copy. Either
    is made aside and renamed: a crash never leaves a torn file under ``dest``'s name."""
    if dest.exists() and os.path.samefile(src, dest):
        return
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or one without links
        copy_durably(src, dest)
        return
    replace_durably(tmp, dest)


def drop_resume_state(checkpoint: Path) -> None:
    """A run that is published (or set aside) is final: its resume state (weights, optimizer and best
    weights: about four times the network) goes; its finished.json still makes the same training free."""
    (Path(checkpoint).parent / "last.pt").unlink(missing_ok=True)


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
    _place(source, final)
    onnx = source.with_name(f"{trained.model_version}.onnx")
    if onnx.is_file():
        _place(onnx, final.with_suffix(".onnx"))
    drop_resume_state(source)
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
    if row.pruned_at is not None:
        raise ModelError(f"{row.model_version}'s files were pruned on {row.pruned_at:%Y-%m-%d}; its row is kept "
                         "for the record. Use 'working' or a version that is not pruned")
    return checkpoint_file(settings.workspace_path, row)


def named_versions(session: Session, settings: Settings) -> set[str]:
    """Model versions that something on record names: a decision, a task, a round, a mask in the
    repository, another network's parent, or a report's results.json. Their files stay."""
    named: set[str] = set()
    for column in (Decision.model_version, Task.model_version, Round.model_version, Model.parent_version):
        named.update(v for v in session.scalars(select(column).distinct()) if v)
    # a mask a person kept names its network; a prediction nobody took (origin "model") does not
    named.update(v for v in session.scalars(select(Mask.model_version).where(Mask.origin != "model").distinct()) if v)
    reports = [r.read_text(errors="replace") for r in sorted(settings.reports_path.glob("*/results.json"))]
    if reports:
        named.update(v for v in session.scalars(select(Model.model_version)) if any(v in text for text in reports))
    return named


def _training_folders(settings: Settings) -> dict[str, list[Path]]:
    """model_version -> the training folders that still hold it (by their finished.json), read once."""
    folders: dict[str, list[Path]] = {}
    for marker in settings.models_path.glob("**/finished.json"):
        try:
            version = json.loads(marker.read_text()).get("model_version")
        except (OSError, ValueError):
            continue
        folders.setdefault(version, []).append(marker.parent)
    return folders


def _files_of(settings: Settings, row: Model, folders: dict[str, list[Path]]) -> list[Path]:
    """The published files of ``row`` and, where its training folder still holds this version, those."""
    final = checkpoint_file(settings.workspace_path, row)
    files = [final, final.with_suffix(".onnx")]
    for run in folders.get(row.model_version, []):
        files += [run / "model.pt", run / "last.pt", run / f"{row.model_version}.onnx"]
    return [f for f in files if f.is_file()]


def _bytes_freed(files: list[Path]) -> int:
    """The space deleting ``files`` gives back: a file's bytes count once all its names (hard links) go."""
    names: dict[tuple[int, int], list[os.stat_result]] = {}
    for f in files:
        st = f.stat()
        names.setdefault((st.st_dev, st.st_ino), []).append(st)
    return sum(stats[0].st_size for stats in names.values() if len(stats) >= stats[0].st_nlink)


def prune(session: Session, settings: Settings, keep: int = 2, dry_run: bool = False) -> dict:
    """Drop the files of published networks nobody needs: not working, not among each task's ``keep``
    newest, and named by nothing on record (``named_versions``). Their rows stay, marked ``pruned_at``.
    A file two versions share (a hard link) frees its space only when the last name goes."""
    if keep < 0:
        raise ModelError(f"--keep must be 0 or more, not {keep}")
    named = named_versions(session, settings)
    folders = _training_folders(settings)
    rows = session.scalars(select(Model).order_by(Model.id.desc())).all()
    newest: dict[str, int] = {}
    pruned, kept, freed = [], [], 0
    for row in rows:
        newest[row.task] = newest.get(row.task, 0) + 1
        if row.pruned_at is None and (row.is_working or newest[row.task] <= keep or row.model_version in named):
            kept.append(row.model_version)
            continue
        if row.pruned_at is not None and not _files_of(settings, row, folders):
            continue  # pruned before (a run stopped mid-way leaves files behind: they go now)
        files = _files_of(settings, row, folders)
        freed += _bytes_freed(files)
        pruned.append(row.model_version)
        if not dry_run:
            for f in files:
                f.unlink(missing_ok=True)
            row.pruned_at = row.pruned_at or datetime.now(timezone.utc)
    session.flush()
    log.info("prune: %d versions %s, %.1f MB freed", len(pruned), "would go" if dry_run else "pruned", freed / 1e6)
    return {"pruned": pruned, "kept": len(kept), "freed_bytes": freed, "freed_mb": round(freed / 1e6, 1),
            "dry_run": dry_run}
