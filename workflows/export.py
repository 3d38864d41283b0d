"""Export the repository in the COVID-QU-Ex folder layout, with a lineage CSV for every mask."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import AnnotatorError
from annotator.imaging.io import read_image, write_png
from annotator.progress import track
from db.models import Decision, Image, Mask
from db.queries import current_mask
from workflows.protocol import IN_REPOSITORY
from workflows.splits import split_of

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

    Needs the protocol's splits (Stage IV); files are written under names of our image ids, so a re-run
    overwrites the same files.
    """
    splits = split_of(session)
    if not splits:
        raise AnnotatorError("no splits yet: run `annotator stage4 sample` and `annotator stage4 sync` first")
    images = list(session.scalars(select(Image).where(Image.id.in_(splits)).order_by(Image.id)))
    images = [i for i in images if i.state in IN_REPOSITORY]
    out_path = Path(out_path)
    root = out_path / "Lung Segmentation Data"
    by_split: dict[str, int] = {}
    lineage_rows = 0
    out_path.mkdir(parents=True, exist_ok=True)
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
            write_png(folder / "images" / name, read_image(settings.workspace_path / image.store_path))
            write_png(folder / "lung masks" / name, read_image(settings.workspace_path / mask_row.store_path))
            by_split[split] = by_split.get(split, 0) + 1
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
    return ExportSummary(out_path, sum(by_split.values()), by_split, lineage_rows)
