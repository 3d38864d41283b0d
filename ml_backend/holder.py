"""The network the backend serves: loaded once per process, swapped when the working network changes.

A *source* says which checkpoint is current (``FixedCheckpoint`` or ``WorkingModelSource``, which reads
the DB's working lung network); ``PredictorHolder`` keeps the loaded predictor and checks the source at
most every ``check_every_s`` seconds. Loading happens at construction (``/setup`` never loads lazily) and
on a swap, under a lock; requests in flight keep the predictor they started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from annotator.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointRef:
    model_version: str | None  # None: unknown until loaded (a bare checkpoint file)
    path: Path


class CheckpointSource(Protocol):
    def current(self) -> CheckpointRef: ...


@dataclass(frozen=True)
class FixedCheckpoint:
    """Always the same checkpoint file (``annotator serve backend --checkpoint PATH``)."""

    path: Path

    def current(self) -> CheckpointRef:
        return CheckpointRef(None, Path(self.path))


class WorkingModelSource:
    """The working lung network recorded in the workspace DB (``models.is_working``)."""

    def __init__(self, database_url: str, workspace_path: Path, task: str = "lung") -> None:
        from db.engine import create_db_engine

        self.engine = create_db_engine(database_url)
        self.workspace_path = Path(workspace_path)
        self.task = task

    def current(self) -> CheckpointRef:
        from sqlalchemy.orm import Session

        from annotator.model_registry import checkpoint_file, working_model

        with Session(self.engine) as session:
            row = working_model(session, self.task)
            if row is None:
                raise ModelError(
                    f"no working {self.task} network in the workspace DB; train one (`annotator stage1 ...`) "
                    "or serve a file with `annotator serve backend --checkpoint PATH`"
                )
            return CheckpointRef(row.model_version, checkpoint_file(self.workspace_path, row))


def load_predictor(path: Path, backend: str = "eager", device: str = "auto", threads: int | None = None):
    """The segmentation engine's Predictor (imports torch); a fast backend falls back to fp32 if unverified."""
    from annotator.segmentation.predict import Predictor

    return Predictor.from_checkpoint(path, backend=backend, device=device, on_refuse="eager", threads=threads or None)


class PredictorHolder:
    """The one loaded predictor of this process; ``get()`` swaps it when the source changes."""

    def __init__(
        self,
        source: CheckpointSource,
        loader: Callable[[Path], object] = load_predictor,
        *,
        check_every_s: float = 2.0,
    ) -> None:
        self.source = source
        self.loader = loader
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._ref: CheckpointRef | None = None
        self._predictor = None
        self._checked_at = 0.0
        self.loads = 0  # how many times a network was loaded (tests and /health show it)
        self.refresh(force=True)

    @property
    def model_version(self) -> str:
        return self._predictor.model_version  # type: ignore[union-attr]

    def _load(self, ref: CheckpointRef) -> None:
        t0 = time.perf_counter()
        predictor = self.loader(ref.path)
        if ref.model_version and predictor.model_version != ref.model_version:
            raise ModelError(
                f"checkpoint {ref.path} holds {predictor.model_version}, but the DB says {ref.model_version}"
            )
        self._predictor, self._ref = predictor, ref
        self.loads += 1
        log.info("loaded %s from %s in %.2f s", predictor.model_version, ref.path, time.perf_counter() - t0)

    def refresh(self, force: bool = False) -> bool:
        """Check the source (at most every check_every_s); load a changed network. True if swapped."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.check_every_s:
            return False
        with self._lock:
            if not force and now - self._checked_at < self.check_every_s:
                return False
            self._checked_at = now
            ref = self.source.current()
            if self._ref is not None and ref.path == self._ref.path and (
                ref.model_version in (None, self._ref.model_version, self.model_version)
            ):
                return False
            previous = self._predictor.model_version if self._predictor is not None else None
            self._load(ref)
            if previous is not None:
                log.info("working network swapped: %s -> %s", previous, self.model_version)
            return previous is not None

    def get(self):
        """The current predictor (after a cheap, throttled check of the source)."""
        try:
            self.refresh()
        except ModelError as exc:  # keep serving the loaded network; say why it was not swapped
            log.error("cannot swap the working network, still serving %s: %s", self.model_version, exc)
        return self._predictor
