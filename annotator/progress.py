"""Progress of long work: the one helper every long loop reports through.

On a terminal it draws a rich bar (description, bar, done/total, rate, elapsed, time left, a free text such
as the loss). Anywhere else (a log file, ``nohup``, CI) a bar would draw nothing until the end, so it writes
plain lines instead: one at the start, one each time another 10% is done, one at least every 30 s while
nothing moves, and one at the end. Both go to stderr, so ``--json`` output on stdout stays clean.

    with progress_bar("pre-labelling", total=len(images)) as bar:
        for image in images:
            ...
            bar.advance()

Bars opened inside another (an epoch bar inside the six networks of Stage III) share one live display.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TypeVar

STEP_SHARE = 0.10  # plain lines: another line each time this share of the total is done
HEARTBEAT_S = 30.0  # ... and at least this often while nothing moves

T = TypeVar("T")

_live: dict = {}  # cache of the one rich display shared by nested bars: {"progress": Progress, "depth": int}
_plain_open: list = []  # the plain tasks now open, outermost first: only the innermost beats


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ProgressTask:
    """One counted piece of work; ``advance`` and ``update`` are all a loop calls."""

    def __init__(self, description: str, total: float | None, unit: str, completed: float = 0):
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = completed
        self.first = completed  # a resumed piece of work: the rate counts what this run did
        self.info = ""
        self.started = time.monotonic()

    def advance(self, n: float = 1, info: str | None = None) -> None:
        self.update(completed=self.completed + n, info=info)

    def update(self, completed: float | None = None, total: float | None = None, info: str | None = None,
               description: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if description is not None:
            self.description = description
        self._changed()

    def _changed(self) -> None:  # the silent task shows nothing
        pass

    def _close(self) -> None:
        pass

    # -- the plain line -------------------------------------------------------------------------------
    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        done = f"{self.completed:g}"
        parts = []
        if self.total:
            share = min(self.completed / self.total, 1.0)
            parts.append(f"{done}/{self.total:g} {self.unit} ({100 * share:.0f}%)")
        else:
            parts.append(f"{done} {self.unit}")
        rate = (self.completed - self.first) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.2f} {self.unit}/s")
        parts.append(f"{_duration(elapsed)} elapsed")
        if self.total and rate > 0 and self.completed < self.total:
            parts.append(f"~{_duration((self.total - self.completed) / rate)} left")
        text = f"{self.description}: " + ", ".join(parts)
        return text + (f"; {self.info}" if self.info else "")


class _PlainTask(ProgressTask):
    def __init__(self, description: str, total: float | None, unit: str, completed: float, stream: IO[str],
                 heartbeat_s: float):
        super().__init__(description, total, unit, completed)
        self._stream = stream
        self._lock = threading.Lock()
        self._step = 0  # tenths of the total reported so far
        self._passed()
        self._last_line = 0.0
        self._emit()
        self._stop = threading.Event()
        self._heartbeat_s = heartbeat_s
        self._thread = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
        _plain_open.append(self)
        self._thread.start()

    def _emit(self) -> None:
        with self._lock:
            self._stream.write(f"[progress] {self.line()}\n")
            self._stream.flush()
            self._last_line = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(min(self._heartbeat_s, 1.0)):
            innermost = not _plain_open or _plain_open[-1] is self  # an inner task shows the life already
            if innermost and time.monotonic() - self._last_line >= self._heartbeat_s:
                self._emit()

    def _passed(self) -> bool:
        """Whether another STEP_SHARE of the total is done since the last check."""
        if not self.total:
            return False
        step = int(self.completed / self.total / STEP_SHARE + 1e-9)
        if step <= self._step:
            return False
        self._step = step
        return True

    def _changed(self) -> None:
        if self._passed() and self.completed < self.total:
            self._emit()

    def _close(self) -> None:
        self._stop.set()
        self._thread.join()
        if self in _plain_open:
            _plain_open.remove(self)
        self._emit()


class _RichTask(ProgressTask):
    def __init__(self, description: str, total: float | None, unit: str, completed: float,
                 stream: IO[str] | None):
        super().__init__(description, total, unit, completed)
        if not _live:
            bar = _rich_progress(stream)
            bar.start()
            _live.update(progress=bar, depth=0)
        _live["depth"] += 1
        self._bar = _live["progress"]
        self._id = self._bar.add_task(description, total=total, completed=completed, info="", unit=unit)

    def _changed(self) -> None:
        self._bar.update(self._id, completed=self.completed, total=self.total, info=self.info,
                         description=self.description)

    def _close(self) -> None:
        _live["depth"] -= 1
        if _live["depth"] == 0:
            self._bar.stop()
            _live.clear()


def _rich_progress(stream: IO[str] | None):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} {task.fields.get('unit', '')}/s" if speed else "", style="progress.data.speed")

    console = Console(file=stream) if stream is not None else Console(stderr=True)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, transient=False)


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether progress drawn on ``stream`` (default stderr) reaches a person at a terminal."""
    from rich.console import Console

    console = Console(file=stream) if stream is not None else Console(stderr=True)
    return console.is_terminal and not console.is_dumb_terminal


@contextmanager
def progress_bar(description: str, total: float | None = None, *, enabled: bool = True, unit: str = "items",
                 completed: float = 0, stream: IO[str] | None = None,
                 heartbeat_s: float = HEARTBEAT_S) -> Iterator[ProgressTask]:
    """Report a counted piece of work: a rich bar on a terminal, plain lines elsewhere, nothing when not
    ``enabled``. ``total`` may be None (unknown) or change later (``update(total=...)``); ``completed``
    is where a resumed piece of work starts."""
    if not enabled or total == 0:  # nothing to do: nothing to show
        task = ProgressTask(description, total, unit, completed)
    elif is_terminal(stream):
        task = _RichTask(description, total, unit, completed, stream)
    else:
        task = _PlainTask(description, total, unit, completed, stream if stream is not None else sys.stderr,
                          heartbeat_s)
    try:
        yield task
    finally:
        task._close()


def track(items: Iterable[T], description: str, total: int | None = None, *, enabled: bool = True,
          unit: str = "items") -> Iterator[T]:
    """``for x in track(xs, "pushing"):`` advances one step per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total, enabled=enabled, unit=unit) as bar:
        for item in items:
            yield item
            bar.advance()
