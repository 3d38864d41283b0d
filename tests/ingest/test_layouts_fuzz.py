"""Property tests of the layouts' readers and the image decoder: random manifests (any bytes, any encoding),
random folder trees (odd names, links that loop, dangle or lead out, folders named like images, FIFOs) and
mutated real image files end in items and problems, or an AnnotatorError, never another exception; and the
importer turns every item into an import or one failure line, in bounded memory."""

from __future__ import annotations

import itertools
import os
import tracemalloc

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.errors import AnnotatorError, ImageReadError
from annotator.imaging.io import load_image
from annotator.imaging.limits import ImageLimits
from annotator.ingest.importer import import_items, list_items
from annotator.ingest.layouts import LAYOUTS, ImportItem, ItemProblem
from db.engine import session_scope


FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
COUNTER = itertools.count()
HEADERS = ["file", "class", "lung_mask_file", "infection_mask_file", "severity_geographic_mean",
           "severity_opacity_mean", "dataset", "patientid", "view", "note"]
CELLS = st.one_of(st.sampled_from(["images/a.png", "a.png", "../a.png", "/etc/passwd", "masks/m.png", "covid",
                                   "Normal", "alien", "", "3.5", "nan", "-1", "high", "images/caf\u00e9.png",
                                   "dir.png", "link.png", "loop.png"]), st.text(max_size=12))
NAMES = st.sampled_from([b"a.png", b"b.jpg", b"caf\xe9.png", b"dir.png", b"IM0001", b".hidden.png", b"x.dcm",
                         b"[red].png", b"scan.tif", b"e.bmp", b"notes.txt", b"covid", b"Normal"])


def _image_bytes(seed: int, suffix: str) -> bytes:
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(suffix, rng.integers(0, 255, (70, 66), dtype=np.uint8))
    assert ok
    return buf.tobytes()


GOOD = {suffix: _image_bytes(i, suffix) for i, suffix in enumerate([".png", ".jpg", ".bmp", ".tif"])}
FILE_BYTES = st.one_of(st.binary(max_size=64), st.sampled_from(list(GOOD.values())),
                       st.sampled_from(list(GOOD.values())).flatmap(
                           lambda b: st.integers(0, len(b)).map(lambda n: b[:n])))


def _check_listing(root, layout: str) -> list:
    try:
        items = list_items(root, layout)
    except AnnotatorError:
        return []
    for item in items:
        assert isinstance(item, (ImportItem, ItemProblem))
        if isinstance(item, ItemProblem):
            item.name.encode("utf-8")  # printable: never a lone surrogate
            assert "\n" not in item.reason
    return items


@FUZZ
@given(header=st.lists(st.sampled_from(HEADERS), min_size=0, max_size=6),
       rows=st.lists(st.lists(CELLS, max_size=7), max_size=6),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]),
       noise=st.binary(max_size=8))
def test_random_manifest_is_items_or_an_annotator_error(tmp_path, header, rows, encoding, noise):
    root = tmp_path / f"m{next(COUNTER)}"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(GOOD[".png"])
    (root / "dir.png").mkdir()
    os.symlink("loop.png", root / "loop.png")
    os.symlink("/etc/hostname", root / "link.png")
    text = "\n".join(",".join(f'"{c}"' if "," in c else c for c in row) for row in [header, *rows])
    raw = text.encode(encoding, "replace") + noise
    (root / "manifest.csv").write_bytes(raw)
    _check_listing(root, "manifest")


@st.composite
def trees(draw):
    """(relative path bytes, kind, payload) entries: files, folders, links and FIFOs at one or two levels."""
    entries = []
    for _ in range(draw(st.integers(1, 8))):
        parts = draw(st.lists(NAMES, min_size=1, max_size=2))
        kind = draw(st.sampled_from(["file", "file", "dir", "link", "fifo"]))
        payload = draw(FILE_BYTES) if kind == "file" else draw(st.sampled_from(
            [b"a.png", b"../outside.png", b"/etc/hostname", b"self", b"nowhere.png", b"."]))
        entries.append((b"/".join(parts), kind, payload))
    return entries


def _build(root, entries) -> None:
    base = os.fsencode(root)
    os.makedirs(base, exist_ok=True)
    for rel, kind, payload in entries:
        path = base + b"/" + rel
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError:  # a parent is a file or a link: this entry cannot exist
            continue
        if os.path.lexists(path) or not os.path.isdir(os.path.dirname(path)):
            continue
        if kind == "file":
            with open(path, "wb") as fh:
                fh.write(payload)
        elif kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif kind == "link":
            os.symlink(path if payload == b"self" else payload, path)
        else:
            os.mkfifo(path)


@pytest.fixture(scope="module")
def fuzz_workspace(tmp_path_factory):
    from annotator.config import load_settings
    from annotator.workspace import init_workspace

    settings = load_settings(workspace=tmp_path_factory.mktemp("fuzz") / "ws")
    init_workspace(settings)
    return settings


@FUZZ
@given(entries=trees(), layout=st.sampled_from(sorted(LAYOUTS)), prefix=st.sampled_from(
    [b"", b"images/", b"CXR_png/", b"Lung Segmentation Data/Train/COVID-19/images/"]))
def test_random_tree_lists_and_imports_item_by_item(tmp_path, fuzz_workspace, entries, layout, prefix):
    root = tmp_path / f"t{next(COUNTER)}"
    _build(root, [(prefix + rel, kind, payload) for rel, kind, payload in entries])
    items = _check_listing(root, layout)
    tracemalloc.start()
    try:
        with session_scope(fuzz_workspace.database_url) as session:
            summary = import_items(session, fuzz_workspace, items, layout)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.seen == len(items) == summary.images_added + summary.images_known + len(summary.failures)
    assert peak < 64 << 20, peak
    for name, reason in summary.failures:
        name.encode("utf-8")
        assert "\n" not in reason


@st.composite
def mutated_image(draw):
    suffix = draw(st.sampled_from(sorted(GOOD)))
    data = bytearray(GOOD[suffix])
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, min(len(data) - 1, 200)))  # headers first: that is where sizes live
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return suffix, bytes(data)


@FUZZ
@given(case=mutated_image())
def test_mutated_image_is_decoded_or_refused_in_bounded_memory(tmp_path, case):
    suffix, data = case
    path = tmp_path / f"i{next(COUNTER)}{suffix}"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        try:
            loaded = load_image(path, ImageLimits(max_pixels=4_000_000, min_side_px=1))
            assert loaded.pixels.ndim == 2 and loaded.pixels.dtype == np.uint8
        except ImageReadError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        path.unlink()
    assert peak < 64 << 20, peak  # 4 Mpx at most, with its conversions
