"""Export the repository in the COVID-QU-Ex folder layout, with a lineage CSV for every mask.

The export is written into a staging folder beside the output (``.<name>.staging-<pid>``) and renamed into
place when complete, replacing the previous export as a whole: a split change never leaves an image in two
splits, a failed or killed export leaves the previous one as it was, and re-running is always safe
(leftovers of a killed run are removed first). An existing folder is only replaced when it is an export
(it holds ``export.json``, or the lineage and decisions CSVs of an older export) or is empty.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.durability import fsync_dir
from annotator.errors import AnnotatorError, ImageReadError
from annotator.imaging.io import write_png
from annotator.progress import track
from annotator.store import image_pixels, read_mask_of
from db.models import Decision, Image, Mask
from db.queries import current_mask
from workflows.protocol import IN_REPOSITORY
from workflows.splits import split_of

EXPORT_MARKER = "export.json"
QUEX_FOLDERS = {"covid": "COVID-19", "non_covid_pneumonia": "Non-COVID", "normal": "Normal"}
SPLIT_FOLDERS = {"train": "Train", "val": "Val", "test": "Test"}


@dataclass
class ExportSummary:
    out_path: Path
    images: int
    by_split: dict[str, int]
    lineage_rows: int


def _class_folder(cls: str | None) -> str:
    return QUEX_FOLDERS.get(cls or "", (cls or "unlabelled").replace("_", "-").title())


def export_covid_qu_ex(session: Session, settings: Settings, out_path: Path) -> ExportSummary:
    """``Lung Segmentation Data/{Train,Val,Test}/{class}/{images,lung masks}`` + lineage.csv + decisions.csv.

    Needs the protocol's splits (Stage IV); files are named by our image ids. Staged, then renamed into
    place (see the module's docstring).
    """
    splits = split_of(session)
    if not splits:
        raise AnnotatorError("no splits yet: run `annotator stage4 sample` and `annotator stage4 sync` first")
    out_path = Path(os.path.abspath(out_path))
    staging = out_path.parent / f".{out_path.name}.staging-{os.getpid()}"
    try:
        _check_target(out_path, settings)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out_path)
        staging.mkdir()
        images, by_split, lineage_rows = _write_export(session, settings, staging, splits)
        (staging / EXPORT_MARKER).write_text(json.dumps({
            "layout": "covid-qu-ex", "images": images, "by_split": by_split, "lineage_rows": lineage_rows,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=2) + "\n")
        _swap_into_place(staging, out_path)
    except ImageReadError as exc:
        raise AnnotatorError(f"{exc}; the export was not changed (`annotator data validate` lists what the store "
                             "lacks)") from exc
    except OSError as exc:
        raise AnnotatorError(f"cannot write the export to {out_path}: {exc.strerror or exc} ({exc.filename or ''}); "
                             "the export was not changed") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportSummary(out_path, images, by_split, lineage_rows)


def _check_target(out_path: Path, settings: Settings) -> None:
    """Refuse a target that is a file, holds the workspace, or holds files that are not an export."""
    if out_path.exists() and not out_path.is_dir():
        raise AnnotatorError(f"{out_path} exists and is not a folder; choose a folder for the export")
    workspace = settings.workspace_path
    if workspace == out_path or out_path in workspace.parents:
        raise AnnotatorError(f"{out_path} holds the workspace; an export replaces its folder as a whole: choose "
                             f"another one (default place: {settings.exports_path / 'covid-qu-ex'})")
    if out_path.is_dir() and any(out_path.iterdir()) and not _is_export(out_path):
        raise AnnotatorError(f"{out_path} holds files that are not an export (no {EXPORT_MARKER}); an export "
                             "replaces its folder as a whole: choose a new or empty folder")


def _is_export(path: Path) -> bool:
    return (path / EXPORT_MARKER).is_file() or all((path / f).is_file() for f in ("lineage.csv", "decisions.csv"))


def _remove_leftovers(out_path: Path) -> None:
    """Staging and replaced folders that a killed export left beside the output (not a running one's)."""
    for prefix in (f".{out_path.name}.staging-", f".{out_path.name}.old-"):
        for path in out_path.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix):]
            if path.is_dir() and not path.is_symlink() and pid.isdigit() and not _running(int(pid)):
                shutil.rmtree(path)


def _running(pid: int) -> bool:
    """Another process with this id is alive (Linux' /proc; elsewhere every leftover counts as dead)."""
    return pid != os.getpid() and Path(f"/proc/{pid}").is_dir()


def _swap_into_place(staging: Path, out_path: Path) -> None:
    old = out_path.parent / f".{out_path.name}.old-{os.getpid()}"
    replacing = out_path.exists() or out_path.is_symlink()
    if replacing:
        os.rename(out_path, old)
    try:
        os.rename(staging, out_path)
    except OSError:
        if replacing:
            os.rename(old, out_path)  # put the previous export back
        raise
    fsync_dir(out_path.parent)
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


def _write_export(session: Session, settings: Settings, out_path: Path,
                  splits: dict[int, str]) -> tuple[int, dict[str, int], int]:
    images = list(session.scalars(select(Image).where(Image.id.in_(splits)).order_by(Image.id)))
    images = [i for i in images if i.state in IN_REPOSITORY]
    root = out_path / "Lung Segmentation Data"
    by_split: dict[str, int] = {}
    lineage_rows = 0
    with (out_path / "lineage.csv").open("w", newline="") as fh, (out_path / "decisions.csv").open("w", newline="") as dfh:
        lineage = csv.writer(fh)
        lineage.writerow(["file", "image_id", "sha256", "class", "split", "state", "mask_kind", "mask_version",
                          "origin", "model_version", "author", "created_at", "current", "decisions"])
        decisions_csv = csv.writer(dfh)
        decisions_csv.writerow(["image_id", "file", "round_id", "actor", "role", "decision", "detail", "lead_time_s",
                                "comment", "model_version", "ls_task_id", "ls_annotation_id", "valid", "created_at"])
        for image in track(images, "exporting", unit="images"):
            split = splits[image.id]
            mask_row = current_mask(session, image.id, "lung")
            if mask_row is None:
                continue
            name = f"cxr_{image.id:06d}.png"
            folder = root / SPLIT_FOLDERS[split] / _class_folder(image.cls)
            write_png(folder / "images" / name, image_pixels(settings, image))
            write_png(folder / "lung masks" / name, read_mask_of(settings, mask_row))
            by_split[split] = by_split.get(split, 0) + 1
            crash_point("export.after_image")
            decisions = list(session.scalars(select(Decision).where(Decision.image_id == image.id).order_by(Decision.id)))
            described = "; ".join(
                f"{d.decision} by {d.actor} ({d.role}) at {d.created_at:%Y-%m-%d %H:%M:%S}"
                + (f", lead {d.lead_time_s:.1f} s" if d.lead_time_s is not None else "")
                for d in decisions
            )
            for m in session.scalars(select(Mask).where(Mask.image_id == image.id).order_by(Mask.kind, Mask.version)):
                lineage.writerow([f"{SPLIT_FOLDERS[split]}/{_class_folder(image.cls)}/{name}", image.id, image.sha256,
                                  image.cls, split, image.state, m.kind, m.version, m.origin, m.model_version or "",
                                  m.author or "", m.created_at.isoformat(), int(m.id == mask_row.id), described])
                lineage_rows += 1
            for d in decisions:
                decisions_csv.writerow([image.id, name, d.round_id, d.actor, d.role, d.decision, d.detail or "",
                                        d.lead_time_s, d.comment or "", d.model_version or "", d.ls_task_id,
                                        d.ls_annotation_id, int(d.valid), d.created_at.isoformat()])
    return sum(by_split.values()), by_split, lineage_rows
