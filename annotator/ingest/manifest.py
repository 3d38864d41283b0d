"""The manifest layout: ``manifest.csv`` (UTF-8, a BOM allowed) lists one image a row, paths relative to
the collection root. Only a file that cannot be read as a CSV table at all, or a header without the
required columns, stops the import; every bad row is one ``ItemProblem`` naming its row, and the rest imports.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

from annotator.errors import AnnotatorError
from annotator.ingest.items import CLASSES, ImportItem, ItemProblem, check_file, is_text, known_class, printable

MANIFEST_REQUIRED = ("file", "class")
ATTRIBUTE_COLUMNS = ("source", "licence", "finding", "lung_mask_origin", "split_hint", "note")
SEVERITY_RANGES = {"severity_geographic_mean": (0.0, 8.0), "severity_opacity_mean": (0.0, 6.0)}
MASK_COLUMNS = (("lung", "lung_mask_file"), ("infection", "infection_mask_file"))


def _manifest_text(manifest: Path) -> str:
    try:
        raw = manifest.read_bytes()
    except OSError as exc:
        raise AnnotatorError(f"{manifest}: cannot read ({exc.strerror or exc})") from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise AnnotatorError(f"{manifest}: is UTF-16; save it as UTF-8 CSV")
    if b"\x00" in raw:
        raise AnnotatorError(f"{manifest}: holds NUL bytes, so it is not a text CSV; save it as UTF-8 CSV")
    # bytes that are not UTF-8 (a Latin-1 export) survive as surrogates: each row holding one is refused alone
    return raw.decode("utf-8-sig", "surrogateescape")


def _rows(manifest: Path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(row number, cells, None) per row, or (row number, None, why) for a row the CSV parser refused."""
    reader = csv.reader(io.StringIO(_manifest_text(manifest), newline=""))
    number = 0
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, None, f"not a CSV row ({exc})"
            continue
        if number == 1 or any(c.strip() for c in cells):
            yield number, cells, None


def _header(manifest: Path, cells: list[str] | None) -> list[str]:
    header = [c.strip() for c in cells or []]
    missing = [c for c in MANIFEST_REQUIRED if c not in header]
    if missing:
        found = printable(", ".join(header[:8]))
        raise AnnotatorError(f"{manifest}: missing column(s) {', '.join(missing)}; it needs at least "
                             f"{', '.join(MANIFEST_REQUIRED)} (found: {found or 'no header'}; see the sample set's "
                             "README)")
    return header


def read_manifest(root: Path, **_) -> Iterator[ImportItem | ItemProblem]:
    """The sample set's manifest.csv: one row per image; paths relative to the root."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise AnnotatorError(f"{root}: no manifest.csv; is this the right --layout?")
    rows = _rows(manifest)
    first = next(rows, None)
    header = _header(manifest, first[1] if first else None)
    seen: dict[str, int] = {}
    for number, cells, error in rows:
        if cells is None:
            yield ItemProblem(f"manifest.csv row {number}", error or "unreadable row")
            continue
        yield _read_row(root, header, number, cells, seen)


def _read_row(root: Path, header: list[str], number: int, cells: list[str],
              seen: dict[str, int]) -> ImportItem | ItemProblem:
    where = f"manifest.csv row {number}"
    if len(cells) > len(header):
        return ItemProblem(where, f"has {len(cells)} values but the header has {len(header)} columns "
                                  "(an unquoted comma?); refused")
    row = {column: cell.strip() for column, cell in zip(header, cells)}  # "a.png, covid" reads as "a.png,covid"
    name = row.get("file", "")
    label = printable(name) if name.strip() else where
    if not all(is_text(c) for c in cells):
        return ItemProblem(label, f"{where} is not valid UTF-8 (a Latin-1 export?); save manifest.csv as UTF-8")
    if not name.strip():
        return ItemProblem(where, "the file column is empty")
    key = os.path.normpath(name)
    if key in seen:
        return ItemProblem(label, f"{where} lists this file again (first in row {seen[key]}); the row is ignored")
    seen[key] = number
    problem = _check_path(root, name)
    if problem:
        return problem
    masks: dict[str, Path | None] = {"lung": None, "infection": None}
    for kind, column in MASK_COLUMNS:
        if row.get(column, "").strip():
            problem = _check_path(root, row[column])
            if problem:
                return ItemProblem(label, f"{column} {problem.name}: {problem.reason}")
            masks[kind] = root / row[column]
    try:
        cls = known_class(row.get("class", "")) if row.get("class", "").strip() else None
        attributes = _attributes(row)
    except (AnnotatorError, ValueError) as exc:
        return ItemProblem(label, f"{where}: {exc}")
    if cls is None:
        return ItemProblem(label, f"{where}: the class column is empty; give one of {', '.join(CLASSES)}")
    return ImportItem(
        image_path=root / name, name=name, cls=cls, dataset=row.get("dataset") or None,
        patient_id=row.get("patientid") or None, view=row.get("view") or None,
        lung_mask_path=masks["lung"], infection_mask_path=masks["infection"], attributes=attributes,
    )


def _check_path(root: Path, name: str) -> ItemProblem | None:
    if Path(name).is_absolute():
        return ItemProblem(printable(name), "is an absolute path; manifest paths are relative to the collection root")
    return check_file(root, root / name, name)


def _attributes(row: dict[str, str]) -> dict:
    attributes: dict = {k: row[k] for k in ATTRIBUTE_COLUMNS if row.get(k)}
    for column, (lo, hi) in SEVERITY_RANGES.items():
        text = (row.get(column) or "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{column} {text!r} is not a number") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"{column} {text!r} is outside {lo:g}..{hi:g}")
        attributes[column] = value
    return attributes
