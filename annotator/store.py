"""The store: images and the versions of their masks, on disk (content-addressed files under the
workspace's ``store/``) and in rows (``images``, ``masks``). The one module that writes a mask version and
the one that reads a stored image or mask back: everything else (import, sync, training data, export,
the queues) asks it, so the path layout and the size check live in one place.

It stands at the top of the package, not under ``ingest/``: import is one of its five clients, and the
protocol's stages would otherwise reach into the importer for the mask store (as they did).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.durability import copy_durably, write_bytes_durably
from annotator.errors import MaskError
from annotator.imaging.io import encode_mask_png, read_image, read_mask
from db.models import Image, Mask


def store_file(src: Path, dest: Path) -> None:
    """Copy atomically; an existing file of the same content address is kept."""
    if dest.exists():
        return
    copy_durably(src, dest)


def write_mask_file(settings: Settings, kind: str, image_sha: str, mask: np.ndarray) -> tuple[str, str]:
    """Write a mask content-addressed; returns (path relative to the workspace, file sha256)."""
    data = encode_mask_png(mask)
    digest = hashlib.sha256(data).hexdigest()
    rel = Path("store") / "masks" / kind / image_sha[:2] / f"{image_sha}-{digest[:12]}.png"
    dest = settings.workspace_path / rel
    if not dest.exists():
        write_bytes_durably(dest, data)
    return str(rel), digest


def add_mask(session: Session, settings: Settings, image: Image, kind: str, mask: np.ndarray, origin: str,
             author: str | None = None, model_version: str | None = None, decision_id: int | None = None,
             skip_if_same: bool = True) -> Mask | None:
    """Record a new version of an image's mask; with skip_if_same an identical file adds nothing."""
    rel, digest = write_mask_file(settings, kind, image.sha256, mask)
    if skip_if_same:
        same = session.scalar(
            select(Mask.id).where(Mask.image_id == image.id, Mask.kind == kind, Mask.file_hash == digest).limit(1)
        )
        if same is not None:
            return None
    version = (session.scalar(
        select(func.max(Mask.version)).where(Mask.image_id == image.id, Mask.kind == kind)) or 0) + 1
    row = Mask(image_id=image.id, kind=kind, version=version, origin=origin, author=author,
               model_version=model_version, store_path=rel, file_hash=digest, decision_id=decision_id)
    session.add(row)
    session.flush()
    return row


def add_first_mask(settings: Settings, image: Image, kind: str, mask: np.ndarray, origin: str, author: str) -> None:
    """Version 1 of a mask of an image created in this transaction: no query needed (flushed with it)."""
    rel, digest = write_mask_file(settings, kind, image.sha256, mask)
    image.masks.append(Mask(kind=kind, version=1, origin=origin, author=author, store_path=rel, file_hash=digest))


def image_file(settings: Settings, image: Image) -> Path:
    """The file people and networks see (the 8-bit PNG working copy of a DICOM or 16-bit original)."""
    return settings.workspace_path / image.store_path


def image_pixels(settings: Settings, image: Image) -> np.ndarray:
    """The HxW uint8 pixels of ``image_file``."""
    return read_image(image_file(settings, image))


def read_mask_of(settings: Settings, row: Mask) -> np.ndarray:
    """A stored mask version as {0,255} uint8; a file whose size differs from its image's is a MaskError."""
    return read_mask(settings.workspace_path / row.store_path, (row.image.height, row.image.width))


def read_mask_by_id(session: Session, settings: Settings, mask_id: int) -> np.ndarray:
    """``read_mask_of`` the mask version with this id (task payloads name masks by id)."""
    row = session.get(Mask, mask_id)
    if row is None:
        raise MaskError(f"mask {mask_id} is not in the store (a task names a mask version that was removed)")
    return read_mask_of(settings, row)
