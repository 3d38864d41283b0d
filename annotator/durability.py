"""Files a database row names are on disk before that row commits: written aside, fsynced, renamed into
place, then the folder fsynced so the rename survives a power cut too. A crash at any moment leaves
either the old file or the whole new one, never a torn one under the final name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, dest: Path) -> None:
    """fsync ``tmp``, rename it to ``dest`` and fsync ``dest``'s folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    fsync_dir(Path(dest).parent)


def write_bytes_durably(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
    replace_durably(tmp, path)


def copy_durably(src: Path, dest: Path) -> None:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, tmp)
    replace_durably(tmp, dest)
