"""Layouts: each turns a folder into ImportItems (an image, its labels and its masks) or ItemProblems.

A registry filled in one place; an unknown name is an error listing the valid ones. Every file a layout
finds passes ``check_file`` (text name, inside the root, a regular file) before it becomes an item.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from annotator.errors import AnnotatorError, UnknownNameError
from annotator.imaging.io import IMAGE_SUFFIXES
from annotator.ingest.items import (  # noqa: F401 - the items are part of this module's interface
    CLASS_ALIASES, ImportItem, ItemProblem, check_file, known_class, link_escapes, normalise_class, one_line,
    printable,
)
from annotator.ingest.manifest import read_manifest


LayoutReader = Callable[..., Iterator["ImportItem | ItemProblem"]]


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
                for found in _images_in(root, images_dir):
                    if isinstance(found, ItemProblem):
                        yield found
                        continue
                    image_path, name = found
                    lung = class_dir / "lung masks" / image_path.name
                    infection = class_dir / "infection masks" / image_path.name
                    yield _mask_problem(root, name, [lung, infection]) or ImportItem(
                        image_path=image_path, name=name, cls=cls, dataset="COVID-QU-Ex",
                        lung_mask_path=lung if lung.exists() else None,
                        infection_mask_path=infection if infection.exists() else None,
                        attributes={"source_split": split_dir.name.lower(), "source_tree": tree},
                    )


def _images_in(root: Path, folder: Path) -> Iterator[tuple[Path, str] | ItemProblem]:
    """The image files of ``folder`` as (path, name under root), or the problem ``check_file`` finds."""
    for image_path in sorted(folder.iterdir()):
        if image_path.suffix.lower() in IMAGE_SUFFIXES:
            name = str(image_path.relative_to(root))
            yield check_file(root, image_path, name) or (image_path, name)


def _mask_problem(root: Path, name: str, masks: list[Path]) -> ItemProblem | None:
    """The image's problem when one of its mask files is there but refused (a link out of the root, ...)."""
    for mask in masks:
        if mask.exists() or mask.is_symlink():
            problem = check_file(root, mask, str(mask.relative_to(root)))
            if problem:
                return ItemProblem(printable(name), f"mask {problem.name}: {problem.reason}")
    return None


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
    for found in _images_in(root, images_dir):
        if isinstance(found, ItemProblem):
            yield found
            continue
        image_path, name = found
        match = _MS_NAME.match(image_path.stem)
        dataset = cls = patient = None
        if match:
            dataset = "Montgomery" if match["site"].upper() == "MCUCXR" else "Shenzhen"
            cls = "tuberculosis" if match["label"] == "1" else "normal"
            patient = f"{match['site'].upper()}_{match['patient']}"
        masks = _find_mask(masks_dir, image_path.stem) if masks_dir else []
        problem = _mask_problem(root, name, masks)
        if problem:
            yield problem
            continue
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
    chosen = known_class(cls) if cls else None  # a wrong --class stops the command before anything is read
    paths, unlisted = _walk(root)
    yield from unlisted
    for path in paths:
        if path.name.startswith("."):  # .DS_Store, macOS '._name.png' resource forks: not images
            continue
        name = str(path.relative_to(root))
        suffix = path.suffix.lower()
        if path.is_symlink():
            problem = _link_problem(root, path, name)
            if problem or path.is_dir():
                if problem:
                    yield problem
                continue
        if path.is_dir():
            if suffix in IMAGE_SUFFIXES:
                yield ItemProblem(printable(name),
                                  "is a folder, not an image file (the files in it are read as usual)")
            continue
        if suffix not in IMAGE_SUFFIXES and suffix != "":
            continue
        if suffix == "" and not _says_dicom(path):  # DICOM files often have no suffix: take those that say DICM
            continue
        problem = check_file(root, path, name)
        if problem:
            yield problem
            continue
        parts = Path(name).parts
        folder_class = normalise_class(parts[0]) if len(parts) > 1 else None
        yield ImportItem(image_path=path, name=name, cls=chosen or folder_class, dataset=root.name)


def _walk(root: Path) -> tuple[list[Path], list[ItemProblem]]:
    """Every path under root, sorted, without following linked folders; iterative, so no nesting depth
    stops it. A sub-folder that cannot be listed is a problem; the root itself, an OSError."""
    found: list[Path] = []
    problems: list[ItemProblem] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            if folder != root and not folder.stat().st_mode & 0o444:  # root could list it; nobody is meant to
                raise PermissionError(13, "no read permission for anyone")
            with os.scandir(folder) as entries:
                for entry in entries:
                    found.append(Path(entry.path))
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError as exc:
            if folder == root:
                raise
            problems.append(ItemProblem(printable(str(folder.relative_to(root))),
                                        f"folder cannot be listed ({exc.strerror or exc}); its files are skipped"))
    return sorted(found), problems


def _link_problem(root: Path, path: Path, name: str) -> ItemProblem | None:
    """A link that loops, dangles, or leads a folder out of the root is a problem whatever its name."""
    if path.is_dir():
        why = link_escapes(root, path)
        return ItemProblem(printable(name), why) if why else None
    if path.exists():
        return None  # a link to a file: check_file judges it like any file
    return check_file(root, path, name)


def _says_dicom(path: Path) -> bool:
    from annotator.imaging.io import is_dicom

    return path.is_file() and is_dicom(path)


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
