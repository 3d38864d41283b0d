"""The importer: check every file, copy images into the store by content hash, record them with their
seed masks. One bad item never stops the rest and never leaves half a record: each item runs in its own
savepoint, files are written atomically and content-addressed, so a re-run after a crash is safe.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.errors import AnnotatorError, MaskError
from annotator.imaging.io import file_sha256, load_image, read_mask, write_png
from annotator.imaging.quality import measure_quality
from annotator.imaging.limits import ImageLimits
from annotator.ingest.layouts import ImportItem, ItemProblem, get_layout, one_line, printable
from annotator.store import add_first_mask, add_mask, store_file
from db.models import Image, ImageSource

log = logging.getLogger(__name__)

BROWSER_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass
class ImportSummary:
    layout: str
    seen: int = 0
    images_added: int = 0
    images_known: int = 0
    masks_added: Counter = field(default_factory=Counter)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (name, name it duplicates)
    warnings: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    by_class: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def good(self) -> int:
        """Items now in the store: added, or known from an earlier run."""
        return self.images_added + self.images_known

    @property
    def outcome(self) -> str:
        """``complete`` (every item is in the store), ``partial`` (some refused, the rest imported) or
        ``failed`` (nothing found, or every item refused)."""
        if self.failures and self.good:
            return "partial"
        return "complete" if self.good else "failed"

    @property
    def exit_code(self) -> int:
        """What `data import` exits with: 0 complete, 3 partial, 1 failed (2 stays Click's usage error)."""
        return {"complete": 0, "partial": 3, "failed": 1}[self.outcome]

    def as_dict(self) -> dict:
        return {
            "layout": self.layout, "seen": self.seen, "images_added": self.images_added,
            "images_known": self.images_known, "masks_added": dict(self.masks_added),
            "duplicates": [list(d) for d in self.duplicates], "warnings": self.warnings,
            "failures": [list(f) for f in self.failures], "by_class": dict(self.by_class),
            "outcome": self.outcome,
        }


def _read_item_mask(item: ImportItem, kind: str, shape: tuple[int, int],
                    threshold: float | None) -> np.ndarray | None:
    paths = {"lung": [item.lung_mask_path, *item.lung_mask_parts], "infection": [item.infection_mask_path]}[kind]
    paths = [p for p in paths if p is not None]
    if not paths:
        return None
    union = np.zeros(shape, np.uint8)
    for path in paths:
        union |= read_mask(path, shape, threshold=threshold)  # a MaskError names the file
    if kind == "lung" and not union.any():  # an empty infection mask is a finding; an empty lung mask is not
        raise MaskError(f"{paths[0]}: the lung mask is empty (no pixel inside); a seed mask must show the lungs"
                        + (f" (read with --mask-threshold {threshold:g})" if threshold is not None else ""))
    return union


def _store_original(settings: Settings, src: Path, rel: Path, deidentify: bool) -> dict:
    """Keep an original outside the served store; a DICOM's copy de-identified if asked. Returns the
    image attributes that record it (where it is; whether and how its header was de-identified)."""
    from annotator.imaging.io import is_dicom

    dest = settings.workspace_path / rel
    if deidentify and (src.suffix.lower() in (".dcm", ".dicom") or is_dicom(src)):
        from annotator.imaging.deidentification import METHOD, write_deidentified

        write_deidentified(src, dest, settings.pseudonym_key)
        return {"original_store_path": str(rel), "deidentified": METHOD, "original_file_sha256": file_sha256(dest)}
    store_file(src, dest)
    return {"original_store_path": str(rel)}


def _import_one(session: Session, settings: Settings, item: ImportItem, layout: str, summary: ImportSummary,
                mask_threshold: float | None = None, deidentify: bool = False) -> None:
    limits = ImageLimits(max_pixels=settings.max_image_pixels, min_side_px=settings.min_image_side_px)
    loaded = load_image(item.image_path, limits)  # raises ImageReadError naming the file
    shape = loaded.pixels.shape
    masks = {kind: _read_item_mask(item, kind, shape, mask_threshold) for kind in ("lung", "infection")}
    sha = file_sha256(item.image_path)

    image = session.scalar(select(Image).where(Image.sha256 == sha))
    if image is None:
        suffix = item.image_path.suffix.lower()
        working_rel = Path("store") / "images" / sha[:2] / f"{sha}{suffix}"
        attributes = dict(item.attributes)
        patient_id = item.patient_id or loaded.patient_id
        if suffix in BROWSER_SUFFIXES and loaded.bit_depth == 8:  # served to the browser as it is
            store_file(item.image_path, settings.workspace_path / working_rel)
        else:
            # DICOM, TIFF, BMP and 16-bit files: the original (a DICOM with its header) is kept outside the
            # folder Label Studio serves; people and networks see an 8-bit PNG view in the store
            original_rel = Path("originals") / sha[:2] / f"{sha}{suffix or '.dcm'}"
            attributes.update(_store_original(settings, item.image_path, original_rel, deidentify))
            working_rel = working_rel.with_name(f"{sha}.view.png")
            if not (settings.workspace_path / working_rel).exists():
                write_png(settings.workspace_path / working_rel, loaded.pixels)
        if deidentify:
            from annotator.imaging.deidentification import pseudonym

            patient_id = pseudonym(patient_id, settings.pseudonym_key)
        quality = measure_quality(loaded.pixels)
        image = Image(
            sha256=sha, store_path=str(working_rel), file_name=item.name, cls=item.cls, dataset=item.dataset,
            patient_id=patient_id, width=shape[1], height=shape[0],
            bit_depth=loaded.bit_depth, view=item.view or loaded.view, resolution_bin=quality.resolution_bin,
            contrast=quality.contrast, snr=quality.snr_db, state="pool", attributes=attributes,
            sources=[ImageSource(original_path=str(item.image_path.resolve()), layout=layout)], masks=[],
        )
        for kind, mask in masks.items():  # a new image: its seed masks are version 1, no lookup needed
            if mask is not None:
                add_first_mask(settings, image, kind, mask, origin="seed", author=f"import:{layout}")
                summary.masks_added[kind] += 1
        session.add(image)
        session.flush()
        summary.images_added += 1
        summary.by_class[item.cls or "unlabelled"] += 1
        return

    summary.images_known += 1
    _restore_files(settings, image, item, loaded.pixels)
    if not _same_source(image, item):  # the same content under another name: noted, not imported again
        summary.duplicates.append((item.name, image.file_name))
        image.sources.append(ImageSource(original_path=str(item.image_path.resolve()), layout=layout))
    for kind, mask in masks.items():
        if mask is not None and add_mask(session, settings, image, kind, mask, origin="seed",
                                         author=f"import:{layout}"):
            summary.masks_added[kind] += 1


def _restore_files(settings: Settings, image: Image, item: ImportItem, pixels: np.ndarray) -> None:
    """A known image whose store file went missing gets it back from this copy (same content hash)."""
    root = settings.workspace_path
    original = root / image.attributes.get("original_store_path", image.store_path)
    if not original.exists():
        _store_original(settings, item.image_path, original.relative_to(root), "deidentified" in image.attributes)
        log.info("restored %s from %s", original, item.image_path)
    if image.store_path != str(original.relative_to(root)) and not (root / image.store_path).exists():
        write_png(root / image.store_path, pixels)


def _same_source(image: Image, item: ImportItem) -> bool:
    return any(s.original_path == str(item.image_path.resolve()) for s in image.sources)


def import_items(session: Session, settings: Settings, items: Iterable[ImportItem | ItemProblem], layout: str,
                 on_item: Callable[[str], None] | None = None, checkpoint: Callable[[], None] | None = None,
                 checkpoint_every: int = 200, mask_threshold: float | None = None,
                 deidentify: bool = False) -> ImportSummary:
    """Import items one savepoint each; ``checkpoint`` (the boundary's commit) runs every N items.

    Whatever goes wrong with one item (its file, its decoding, its masks, the store write) is one line in
    ``summary.failures`` and the savepoint rolls back; the rest imports. ``mask_threshold`` says how to read
    masks that are not binary (value >= threshold is inside); without it they are refused. ``deidentify``:
    stored DICOM copies lose their identifying header fields, patient ids become pseudonyms.
    """
    if deidentify:
        from annotator.imaging.deidentification import pseudonym

        pseudonym("check", settings.pseudonym_key)  # no key: fail before anything is imported
    summary = ImportSummary(layout=layout)
    for entry in items:
        summary.seen += 1
        if isinstance(entry, ItemProblem):
            summary.failures.append((printable(entry.name), entry.reason))
        else:
            try:
                with session.begin_nested():
                    _import_one(session, settings, entry, layout, summary, mask_threshold, deidentify)
            except (AnnotatorError, OSError, ValueError, MemoryError) as exc:
                summary.failures.append((printable(entry.name), one_line(exc)))
                log.info("import of %s failed: %s", printable(entry.name), one_line(exc))
            else:
                crash_point("import.after_item")
        if on_item:
            on_item(entry.name)
        if checkpoint and summary.seen % checkpoint_every == 0:
            checkpoint()
    return summary


def list_items(path: Path, layout: str, cls: str | None = None) -> list[ImportItem | ItemProblem]:
    """The items a layout finds under ``path`` (resolving the layout first, so a bad name fails at once)."""
    reader = get_layout(layout)
    root = Path(path)
    if not root.is_dir():
        missing = "" if root.exists() else " (it does not exist)"
        raise AnnotatorError(f"{printable(str(root))}: not a folder{missing}")
    try:
        return list(reader(root, cls=cls))
    except OSError as exc:  # the folder itself cannot be listed
        raise AnnotatorError(f"{printable(str(exc.filename or root))}: cannot list ({exc.strerror or exc})") from exc


def import_collection(session: Session, settings: Settings, path: Path, layout: str, cls: str | None = None,
                      **kwargs) -> ImportSummary:
    return import_items(session, settings, list_items(path, layout, cls), layout, **kwargs)
