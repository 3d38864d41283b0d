"""What a layout hands the importer (``ImportItem``, or an ``ItemProblem`` for an item refused before any
file was read) and the checks every layout runs on a file it found: the name is text, the file exists, is a
regular file, and stays inside the collection root (no link or ``..`` out of it, no link loop).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from annotator.errors import AnnotatorError, UnknownNameError


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

    name: str  # printable: bytes that are not UTF-8 are shown as \xNN
    reason: str


# Class names as collections spell them -> ours.
CLASS_ALIASES = {
    "covid": "covid", "covid-19": "covid", "covid19": "covid", "covid_19": "covid",
    "non-covid": "non_covid_pneumonia", "non_covid": "non_covid_pneumonia", "noncovid": "non_covid_pneumonia",
    "pneumonia": "non_covid_pneumonia", "non_covid_pneumonia": "non_covid_pneumonia",
    "viral pneumonia": "non_covid_pneumonia", "bacterial pneumonia": "non_covid_pneumonia",
    "normal": "normal", "healthy": "normal", "sars": "sars", "mers": "mers",
    "tuberculosis": "tuberculosis", "tb": "tuberculosis",
}
CLASSES = sorted(set(CLASS_ALIASES.values()))


def normalise_class(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key in CLASS_ALIASES:
        return CLASS_ALIASES[key]
    if key.replace("-", "_") in CLASS_ALIASES:
        return CLASS_ALIASES[key.replace("-", "_")]
    return re.sub(r"[^a-z0-9]+", "_", key).strip("_")


def known_class(name: str) -> str:
    """Our class for a name a manifest or ``--class`` gives; an unknown one is an error listing the valid ones."""
    cls = normalise_class(name)
    if cls not in CLASSES:
        raise UnknownNameError("class", name, CLASSES)
    return cls


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(name: str) -> str:
    """A name safe to print, log and store: bytes that are not UTF-8 (or lone surrogates) and control
    characters (a newline, a terminal escape) become \\xNN."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        try:
            name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


def one_line(exc: BaseException) -> str:
    """A failure as one printable line; an error not of our own making carries its type."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    if not isinstance(exc, AnnotatorError):
        text = f"{type(exc).__name__}: {text}"
    return printable(" ".join(text.split()))


def is_text(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_file(root: Path, path: Path, name: str) -> ItemProblem | None:
    """A problem when the file's name is not text, it is missing, a link loop or a dangling link, lies
    outside the root (a link, a linked folder, '..' or an absolute path), or is not a regular file."""
    shown = printable(name)
    if not is_text(str(path)):
        return ItemProblem(shown, "file name is not valid UTF-8 (undecodable bytes shown as \\xNN); rename the file")
    if _CONTROL.search(name):
        return ItemProblem(shown, "file name holds control characters (a newline, a tab, an escape; shown as \\xNN); "
                                  "rename the file")
    if not _inside(Path(os.path.abspath(root)), Path(os.path.abspath(path))):  # '..' or absolute, before any lookup
        return ItemProblem(shown, f"path escapes the import root ({printable(os.path.abspath(path))}); refused")
    try:
        path.lstat()
    except OSError as exc:
        return ItemProblem(shown, f"file not found: {path}" if isinstance(exc, FileNotFoundError)
                           else f"cannot open ({exc.strerror or exc})")
    try:
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        return ItemProblem(shown, f"dangling symbolic link (to {printable(os.readlink(path))}); refused"
                           if path.is_symlink() else f"file not found: {path}")
    except OSError as exc:  # ELOOP: a link that points (through others) to itself
        return ItemProblem(shown, f"symbolic link loop ({exc.strerror or exc}); refused")
    if not _inside(Path(os.path.realpath(root)), real):
        what = "symbolic link" if path.is_symlink() else "path"
        return ItemProblem(shown, f"{what} escapes the import root (it resolves to {printable(str(real))}); refused")
    mode = real.stat().st_mode
    if stat.S_ISDIR(mode):
        return ItemProblem(shown, "is a folder, not an image file")
    if not stat.S_ISREG(mode):
        return ItemProblem(shown, "not a regular file (a pipe, socket or device); refused")
    if not mode & 0o444:  # root could read it anyway; nobody is meant to
        return ItemProblem(shown, f"not readable (permissions {stat.S_IMODE(mode):03o}); make it readable to import it")
    return None


def _inside(root: Path, path: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def link_escapes(root: Path, path: Path) -> str | None:
    """Why a linked folder is refused (it leads out of the root, or loops), or None when it stays inside."""
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        return f"symbolic link to a folder cannot be followed ({exc.strerror or exc}); refused"
    if not _inside(Path(os.path.realpath(root)), real):
        return f"symbolic link to a folder escapes the import root ({printable(str(real))}); refused"
    return None
