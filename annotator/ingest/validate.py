"""Re-check the store against the DB: files exist, decode, match their hashes and their image's size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import AnnotatorError
from annotator.imaging.io import file_sha256
from annotator.ingest.items import one_line, printable
from annotator.store import image_pixels, read_mask_of
from db.models import Image, Mask


@dataclass
class ValidationReport:
    images: int = 0
    masks: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def _present(report: ValidationReport, where: str, path, hint: str, on_item: Callable[[], None] | None) -> bool:
    """Is ``path`` a regular file? If not, the problem is reported (and the item counted as done)."""
    if path.is_file():
        return True
    what = "file missing" if not path.is_symlink() and not path.exists() else "not a regular file"
    report.problems.append((where, f"{path}: {what}{hint}"))
    if on_item:
        on_item()
    return False


def validate_store(session: Session, settings: Settings, on_item: Callable[[], None] | None = None) -> ValidationReport:
    report = ValidationReport()
    root = settings.workspace_path
    for image in session.scalars(select(Image).order_by(Image.id)):
        report.images += 1
        where = f"image {image.id} ({printable(image.file_name or '')})"
        original = root / (image.attributes or {}).get("original_store_path", image.store_path)
        if not _present(report, where, original, " (re-import its collection to restore it)", on_item):
            continue
        try:
            # a de-identified copy has its own hash; any other original is the imported file itself
            if file_sha256(original) != (image.attributes or {}).get("original_file_sha256", image.sha256):
                report.problems.append((where, f"{original} does not match its content hash"))
            pixels = image_pixels(settings, image)
            if pixels.shape != (image.height, image.width):
                report.problems.append((where, f"stored size {image.width}x{image.height}, file {pixels.shape[::-1]}"))
        except (OSError, AnnotatorError, ValueError, MemoryError) as exc:
            report.problems.append((where, one_line(exc)))
        if on_item:
            on_item()
    for mask in session.scalars(select(Mask).order_by(Mask.id)):
        report.masks += 1
        where = f"mask {mask.id} ({mask.kind} v{mask.version} of image {mask.image_id})"
        path = root / mask.store_path
        if not _present(report, where, path, "", on_item):
            continue
        try:
            if file_sha256(path) != mask.file_hash:
                report.problems.append((where, f"{path} does not match its hash"))
            read_mask_of(settings, mask)
        except (OSError, AnnotatorError, ValueError, MemoryError) as exc:
            report.problems.append((where, one_line(exc)))
        if on_item:
            on_item()
    return report

