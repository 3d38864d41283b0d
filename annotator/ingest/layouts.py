"""Layouts: each turns a folder into ImportItems (an image, its labels and its masks) or ItemProblems.

A registry filled in one place; an unknown name is an error listing the valid ones.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from annotator.errors import AnnotatorError, UnknownNameError
from annotator.imaging.io import IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImportItem:
    image_path: Path
    name: str  # the name it is known by in its collection (relative path)
    cls: str | None = None
    dataset: str | None = None
    patient_id: str | None = None
    view: str | None = None
    lung_mask_path: Path | None = None
    infection_mask_path: Path | None = None
    lung_mask_parts: tuple[Path, ...] = ()  # a lung mask kept as parts (Montgomery's left/right): their union
    attributes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ItemProblem:
    """Something a layout found wrong before any file was read (a missing file, an escaping link)."""

    name: str
    reason: str


LayoutReader = Callable[..., Iterator["ImportItem | ItemProblem"]]

# Class names as collections spell them -> ours.
CLASS_ALIASES = {
    "covid": "covid", "covid-19": "covid", "covid19": "covid", "covid_19": "covid",
    "non-covid": "non_covid_pneumonia", "non_covid": "non_covid_pneumonia", "noncovid": "non_covid_pneumonia",
    "pneumonia": "non_covid_pneumonia", "non_covid_pneumonia": "non_covid_pneumonia",
    "viral pneumonia": "non_covid_pneumonia", "bacterial pneumonia": "non_covid_pneumonia",
    "normal": "normal", "healthy": "normal", "sars": "sars", "mers": "mers",
    "tuberculosis": "tuberculosis", "tb": "tuberculosis",
}


def normalise_class(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key in CLASS_ALIASES:
        return CLASS_ALIASES[key]
    if key.replace("-", "_") in CLASS_ALIASES:
        return CLASS_ALIASES[key.replace("-", "_")]
    return re.sub(r"[^a-z0-9]+", "_", key).strip("_")


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _check_file(root: Path, path: Path, name: str) -> ItemProblem | None:
    """A problem when the file is missing or lies outside the root (a link, a linked folder or '..')."""
    if not _inside(root, path):
        what = "symbolic link" if path.is_symlink() else "path"
        return ItemProblem(name, f"{what} escapes the import root (it resolves to {path.resolve()}); refused")
    if not path.is_file():
        return ItemProblem(name, f"file not found: {path}")
    return None


MANIFEST_REQUIRED = ("file", "class")


def read_manifest(root: Path, **_) -> Iterator[ImportItem | ItemProblem]:
    """The sample set's manifest.csv: one row per image; paths relative to the root."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise AnnotatorError(f"{root}: no manifest.csv; is this the right --layout?")
    with manifest.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotatorError(f"{manifest}: missing column(s) {', '.join(missing)}; it needs at least "
                                 f"{', '.join(MANIFEST_REQUIRED)} (see the sample set's README)")
        for row in reader:
            name = row["file"]
            image_path = root / name
            problem = _check_file(root, image_path, name)
            if problem:
                yield problem
                continue
            masks: dict[str, Path | None] = {"lung": None, "infection": None}
            for kind, column in (("lung", "lung_mask_file"), ("infection", "infection_mask_file")):
                if row.get(column):
                    masks[kind] = root / row[column]
                    problem = _check_file(root, masks[kind], row[column])
                    if problem:
                        break
            if problem:
                yield ItemProblem(name, problem.reason)
                continue
            attributes = {
                k: row[k]
                for k in ("source", "licence", "finding", "lung_mask_origin", "split_hint", "note")
                if row.get(k)
            }
            for k in ("severity_geographic_mean", "severity_opacity_mean"):
                if row.get(k):
                    attributes[k] = float(row[k])
            yield ImportItem(
                image_path=image_path, name=name, cls=normalise_class(row["class"]), dataset=row.get("dataset") or None,
                patient_id=row.get("patientid") or None, view=row.get("view") or None,
                lung_mask_path=masks["lung"], infection_mask_path=masks["infection"], attributes=attributes,
            )


QUEX_CLASSES = {"COVID-19": "covid", "Non-COVID": "non_covid_pneumonia", "Normal": "normal"}


def read_covid_qu_ex(root: Path, **_) -> Iterator[ImportItem | ItemProblem]:
    """COVID-QU-Ex: ``{Lung,Infection} Segmentation Data/{Train,Val,Test}/{class}/{images,lung masks,infection masks}``."""
    trees = [t for t in ("Lung Segmentation Data", "Infection Segmentation Data") if (root / t).is_dir()]
    if not trees:
        raise AnnotatorError(
            f"{root}: neither 'Lung Segmentation Data' nor 'Infection Segmentation Data' found; is this COVID-QU-Ex?"
        )
    for tree in trees:
        tree_dir = root / tree
        if (tree_dir / tree).is_dir():  # the Kaggle archive nests each tree in a folder of the same name
            tree_dir = tree_dir / tree
        for split_dir in sorted(p for p in tree_dir.iterdir() if p.is_dir()):
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                cls = QUEX_CLASSES.get(class_dir.name, normalise_class(class_dir.name))
                images_dir = class_dir / "images"
                if not images_dir.is_dir():
                    continue
                for image_path in sorted(images_dir.iterdir()):
                    if image_path.suffix.lower() not in IMAGE_SUFFIXES:
                        continue
                    name = str(image_path.relative_to(root))
                    problem = _check_file(root, image_path, name)
                    if problem:
                        yield problem
                        continue
                    lung = class_dir / "lung masks" / image_path.name
                    infection = class_dir / "infection masks" / image_path.name
                    yield ImportItem(
                        image_path=image_path, name=name, cls=cls, dataset="COVID-QU-Ex",
                        lung_mask_path=lung if lung.exists() else None,
                        infection_mask_path=infection if infection.exists() else None,
                        attributes={"source_split": split_dir.name.lower(), "source_tree": tree},
                    )


_MS_NAME = re.compile(r"^(?P<site>MCUCXR|CHNCXR)_(?P<patient>\d+)_(?P<label>[01])", re.IGNORECASE)


def _find_mask(masks_dir: Path, stem: str) -> list[Path]:
    for candidate in (masks_dir / f"{stem}.png", masks_dir / f"{stem}_mask.png"):
        if candidate.exists():
            return [candidate]
    sides = [masks_dir / side / f"{stem}.png" for side in ("leftMask", "rightMask")]  # Montgomery's ManualMask
    return [p for p in sides if p.exists()]


def read_montgomery_shenzhen(root: Path, **_) -> Iterator[ImportItem | ItemProblem]:
    """Montgomery / Shenzhen: ``images/`` (or ``CXR_png/``) and ``masks/`` (or ``ManualMask/``) by file name.

    The class and patient come from the NLM file names (``MCUCXR_0001_0.png``: patient 0001, 0 normal,
    1 tuberculosis). A mask split into leftMask/rightMask is their union.
    """
    images_dir = next((root / d for d in ("images", "CXR_png", "CXR") if (root / d).is_dir()), None)
    masks_dir = next((root / d for d in ("masks", "mask", "ManualMask") if (root / d).is_dir()), None)
    if images_dir is None:
        raise AnnotatorError(f"{root}: no images/ (or CXR_png/) folder; is this Montgomery/Shenzhen?")
    for image_path in sorted(images_dir.iterdir()):
        if image_path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        name = str(image_path.relative_to(root))
        problem = _check_file(root, image_path, name)
        if problem:
            yield problem
            continue
        match = _MS_NAME.match(image_path.stem)
        dataset = cls = patient = None
        if match:
            dataset = "Montgomery" if match["site"].upper() == "MCUCXR" else "Shenzhen"
            cls = "tuberculosis" if match["label"] == "1" else "normal"
            patient = f"{match['site'].upper()}_{match['patient']}"
        masks = _find_mask(masks_dir, image_path.stem) if masks_dir else []
        if len(masks) == 1 and masks[0].parent.name in ("leftMask", "rightMask"):
            other = "rightMask" if masks[0].parent.name == "leftMask" else "leftMask"
            yield ItemProblem(name, f"lung mask incomplete: {masks[0]} has no {other} partner "
                                    f"({masks_dir / other / masks[0].name}); a one-lung mask is not a seed mask")
            continue
        yield ImportItem(
            image_path=image_path, name=name, cls=cls, dataset=dataset, patient_id=patient,
            lung_mask_path=masks[0] if masks else None, lung_mask_parts=tuple(masks[1:]),
        )


def read_folder(root: Path, cls: str | None = None, **_) -> Iterator[ImportItem | ItemProblem]:
    """Any folder of PNG, JPEG, BMP, TIFF or DICOM files; the class is ``--class`` or the first sub-folder."""
    for path in sorted(root.rglob("*")):  # rglob does not descend into linked folders
        if path.is_dir():
            if path.is_symlink() and not _inside(root, path):
                yield ItemProblem(str(path.relative_to(root)),
                                  f"symbolic link to a folder escapes the import root ({path.resolve()}); refused")
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES and path.suffix != "":
            continue
        if path.name.startswith("."):  # .DS_Store, macOS '._name.png' resource forks: not images
            continue
        if path.suffix == "" and not path.is_file():
            continue
        name = str(path.relative_to(root))
        if path.is_symlink() and not _inside(root, path):
            yield ItemProblem(name, f"symbolic link escapes the import root ({path.resolve()}); refused")
            continue
        if path.suffix == "":  # DICOM files often have no suffix: only take those that say DICM
            from annotator.imaging.io import is_dicom

            if not is_dicom(path):
                continue
        parts = Path(name).parts
        folder_class = normalise_class(parts[0]) if len(parts) > 1 else None
        yield ImportItem(image_path=path, name=name, cls=normalise_class(cls) if cls else folder_class,
                         dataset=root.name)


LAYOUTS: dict[str, LayoutReader] = {
    "manifest": read_manifest,
    "covid-qu-ex": read_covid_qu_ex,
    "montgomery-shenzhen": read_montgomery_shenzhen,
    "folder": read_folder,
}


def get_layout(name: str) -> LayoutReader:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise UnknownNameError("layout", name, LAYOUTS) from None
