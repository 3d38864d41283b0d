"""The images the recognition pipeline learns from: from a workspace's store (the CLI) or straight from a
sample-set manifest (tests, benchmarks). No torch.

A ``Sample`` names files; pixels are read when needed (``load_pixels``) and kept by the caller.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import TrainingError
from annotator.imaging.io import read_image, read_mask
from annotator.recognition.config import scheme_class
from db.models import Image, Mask, SplitMember

PROTOCOL_SPLIT = "protocol"


@dataclass(frozen=True)
class Sample:
    key: str  # the image id (store) or the manifest's file name
    image_path: Path
    cls: str | None
    group: str  # the patient; an image without a patient id is its own group
    lung_mask_path: Path | None = None
    infection_mask_path: Path | None = None
    severity_geographic: float | None = None
    severity_opacity: float | None = None
    split: str | None = None  # "test" for Stage IV's verified test set
    dataset: str | None = None  # the source collection (Montgomery and Shenzhen are Stage I's seed set)


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def samples_from_manifest(root: Path, classes: Sequence[str] | None = None) -> list[Sample]:
    """Every image of a sample-set manifest (``manifest.csv`` columns, see the sample README)."""
    out = []
    with (root / "manifest.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if classes is not None and row["class"] not in classes:
                continue
            out.append(
                Sample(
                    key=row["file"],
                    image_path=root / row["file"],
                    cls=row["class"],
                    group=row.get("patientid") or row["file"],
                    lung_mask_path=root / row["lung_mask_file"] if row.get("lung_mask_file") else None,
                    infection_mask_path=root / row["infection_mask_file"] if row.get("infection_mask_file") else None,
                    severity_geographic=_float(row.get("severity_geographic_mean")),
                    severity_opacity=_float(row.get("severity_opacity_mean")),
                    dataset=row.get("dataset") or None,
                )
            )
    return out


def samples_from_store(session: Session, settings: Settings) -> list[Sample]:
    """Every image of the workspace with its newest lung and infection mask and its protocol split."""
    root = settings.workspace_path
    newest: dict[tuple[int, str], tuple[int, str]] = {}
    for image_id, kind, version, path in session.execute(select(Mask.image_id, Mask.kind, Mask.version, Mask.store_path)):
        if (image_id, kind) not in newest or version > newest[(image_id, kind)][0]:
            newest[(image_id, kind)] = (version, path)
    splits = dict(session.execute(select(SplitMember.image_id, SplitMember.split).where(SplitMember.name == PROTOCOL_SPLIT)).all())
    out = []
    for image in session.scalars(select(Image).order_by(Image.id)):
        lung = newest.get((image.id, "lung"))
        infection = newest.get((image.id, "infection"))
        attrs = image.attributes or {}
        out.append(
            Sample(
                key=str(image.id),
                image_path=root / image.store_path,
                cls=image.cls,
                group=image.patient_id or f"image-{image.id}",
                lung_mask_path=root / lung[1] if lung else None,
                infection_mask_path=root / infection[1] if infection else None,
                severity_geographic=_float(attrs.get("severity_geographic_mean")),
                severity_opacity=_float(attrs.get("severity_opacity_mean")),
                split=splits.get(image.id),
                dataset=image.dataset,
            )
        )
    return out


def select_scheme(samples: Sequence[Sample], class_names: Sequence[str], scheme: str) -> tuple[list[Sample], list[int]]:
    """The samples of a classification scheme's classes, relabelled to them (a member class, such as SARS in
    the 3-class scheme's non-COVID pneumonia, takes its scheme class: ``config.SCHEME_MEMBERS``), and their
    label indices; a scheme class with no image in the store is a TrainingError that lists what it has."""
    mapped = [(s, scheme_class(scheme, s.cls)) for s in samples]
    counts = Counter(c for _, c in mapped if c is not None)
    missing = [c for c in class_names if counts.get(c, 0) == 0]
    if missing:
        have = Counter(s.cls for s in samples)
        listed = ", ".join(f"{k} {v}" for k, v in sorted(have.items(), key=lambda kv: str(kv[0])))
        raise TrainingError(
            f"scheme {scheme!r} needs classes {list(class_names)} but the store has no {missing} "
            f"(it has: {listed}); import them or drop the scheme from `schemes`"
        )
    index = {c: i for i, c in enumerate(class_names)}
    chosen = [s if s.cls == c else dataclasses.replace(s, cls=c) for s, c in mapped if c is not None]
    return chosen, [index[s.cls] for s in chosen]


def load_pixels(sample: Sample) -> np.ndarray:
    return read_image(sample.image_path)


def load_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray | None:
    return read_mask(path, shape) if path is not None else None
