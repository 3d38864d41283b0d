"""Every bad input of the issue in one collection: each fails alone with a line naming its file, the rest
imports, and nothing is half-written (DB rows and store files checked)."""

from __future__ import annotations

import os
import re
import shutil

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from annotator.errors import AnnotatorError, UnknownNameError
from annotator.imaging.io import file_sha256, read_mask
from annotator.ingest.importer import import_collection, list_items
from db.engine import session_scope
from db.models import Image, ImageSource, Mask


def _store_files(settings, kind: str) -> list:
    return sorted(p for p in (settings.store_path / kind).rglob("*") if p.is_file())


@pytest.fixture
def bad_collection(tmp_path, sample_data, rows_where, manifest_collection):
    """A manifest collection of 12 items: 3 good images (one with a soft mask), a duplicate, 8 bad items."""
    good = rows_where(6, dataset="Montgomery", lung_mask_file=True)
    quex = rows_where(1, dataset="COVID-QU-Ex")[0]
    a, b, c, d, e, outside = good
    rows = [a, quex, b, c, d]
    root = tmp_path / "col"
    dup = dict(a, file="images/normal/copy_of_a.jpg")
    missing = dict(a, file="images/normal/missing.jpg", lung_mask_file="")
    b["lung_mask_file"] = "masks/lung/nowhere.png"
    names = {
        "zero": "images/normal/zero.jpg", "trunc_jpg": "images/normal/trunc.jpg",
        "trunc_png": "images/normal/trunc.png", "text_png": "images/normal/notes.png",
        "link": "images/normal/escape.jpg",
    }
    extra = [dict(e, file=name, lung_mask_file="") for name in names.values()]
    manifest_collection(root, [*rows, dup, missing, *extra])
    shutil.copyfile(sample_data / a["file"], root / dup["file"])
    # c: a mask of another size; d: a soft (non-binary) mask
    mask_c = read_mask(sample_data / c["lung_mask_file"])
    cv2.imwrite(str(root / c["lung_mask_file"]), cv2.resize(mask_c, (mask_c.shape[1] // 2, mask_c.shape[0])))
    soft = cv2.GaussianBlur(read_mask(sample_data / d["lung_mask_file"]), (9, 9), 3)
    cv2.imwrite(str(root / d["lung_mask_file"]), soft)
    # broken images
    (root / names["zero"]).write_bytes(b"")
    jpeg = (sample_data / e["file"]).read_bytes()
    (root / names["trunc_jpg"]).write_bytes(jpeg[: len(jpeg) // 2])
    ok, png = cv2.imencode(".png", cv2.imread(str(sample_data / e["file"]), cv2.IMREAD_GRAYSCALE))
    (root / names["trunc_png"]).write_bytes(png.tobytes()[: len(png) * 2 // 3])
    (root / names["text_png"]).write_text("patient list, not an image\n")
    os.symlink(sample_data / outside["file"], root / names["link"])  # a real image, outside the root
    expected_failures = {
        names["zero"]: "empty file",
        names["trunc_jpg"]: "truncated JPEG|not a readable image",
        names["trunc_png"]: "truncated PNG|not a readable image",
        names["text_png"]: "not a readable image",
        names["link"]: "symbolic link escapes the import root",
        missing["file"]: "file not found",
        b["file"]: "file not found: .*nowhere.png",
        c["file"]: "mask is .* but its image is",
        d["file"]: r"not a binary mask \(\d+ levels: 0, .*--mask-threshold",
    }
    return {"root": root, "a": a, "quex": quex, "c": c, "d": d, "dup": dup, "soft": soft,
            "failures": expected_failures}


def test_each_bad_input_fails_alone_and_the_rest_imports(workspace, bad_collection):
    col = bad_collection
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, col["root"], "manifest")
    failures = dict(summary.failures)
    assert set(failures) == set(col["failures"])
    for name, pattern in col["failures"].items():
        import re

        assert re.search(pattern, failures[name]), (name, failures[name])
        assert "\n" not in failures[name]
    assert not summary.ok
    assert (summary.seen, summary.images_added, summary.images_known) == (12, 2, 1)
    assert (summary.outcome, summary.exit_code) == ("partial", 3)
    assert dict(summary.masks_added) == {"lung": 2, "infection": 1}
    assert summary.duplicates == [(col["dup"]["file"], col["a"]["file"])]
    assert summary.warnings == []

    with session_scope(workspace.database_url) as session:
        names = set(session.scalars(select(Image.file_name)))
        assert names == {col["a"]["file"], col["quex"]["file"]}
        # the duplicate: one image, both names noted
        image_a = session.scalar(select(Image).where(Image.file_name == col["a"]["file"]))
        sources = sorted(session.scalars(select(ImageSource.original_path).where(ImageSource.image_id == image_a.id)))
        assert sources == sorted(str((col["root"] / col[k]["file"]).resolve()) for k in ("a", "dup"))
        # nothing of the failed items: no rows, no files
        assert session.scalar(select(func.count(Mask.id)).where(Mask.kind == "lung")) == 2
        assert session.scalar(select(func.count(Mask.id)).where(Mask.kind == "infection")) == 1
        assert session.scalar(select(func.count(ImageSource.id))) == 3
        mask_paths = set(session.scalars(select(Mask.store_path)))
        image_paths = set(session.scalars(select(Image.store_path)))
    images = _store_files(workspace, "images")
    masks = _store_files(workspace, "masks")
    assert {str(p.relative_to(workspace.workspace_path)) for p in images} == image_paths
    assert {str(p.relative_to(workspace.workspace_path)) for p in masks} == mask_paths
    assert not [p for p in workspace.store_path.rglob("*") if p.suffix in (".part", ".tmp")]
    bad_sha = file_sha256(col["root"] / col["c"]["file"])  # its image was fine, its mask was not
    assert not any(bad_sha in p.name for p in images)


def test_rerun_adds_nothing_and_reports_the_same_failures(workspace, bad_collection):
    col = bad_collection
    with session_scope(workspace.database_url) as session:
        first = import_collection(session, workspace, col["root"], "manifest")
    with session_scope(workspace.database_url) as session:
        second = import_collection(session, workspace, col["root"], "manifest")
        assert session.scalar(select(func.count(Image.id))) == 2
        assert session.scalar(select(func.count(Mask.id))) == 3
        assert session.scalar(select(func.count(ImageSource.id))) == 3
    assert (second.images_added, sum(second.masks_added.values()), second.duplicates) == (0, 0, [])
    assert second.images_known == 3
    assert dict(second.failures) == dict(first.failures)


def test_soft_mask_imports_when_a_threshold_says_how_to_read_it(workspace, bad_collection):
    col = bad_collection
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, col["root"], "manifest", mask_threshold=128)
    assert col["d"]["file"] not in dict(summary.failures) and summary.images_added == 3
    with session_scope(workspace.database_url) as session:
        image_d = session.scalar(select(Image).where(Image.file_name == col["d"]["file"]))
        soft_row = session.scalar(select(Mask).where(Mask.image_id == image_d.id))
        stored = read_mask(workspace.workspace_path / soft_row.store_path)
    np.testing.assert_array_equal(stored, np.where(col["soft"] >= 128, 255, 0))


def test_fixed_item_imports_on_the_next_run(workspace, bad_collection, sample_data):
    col = bad_collection
    with session_scope(workspace.database_url) as session:
        import_collection(session, workspace, col["root"], "manifest")
    shutil.copyfile(sample_data / col["c"]["lung_mask_file"], col["root"] / col["c"]["lung_mask_file"])
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, col["root"], "manifest")
    assert (summary.images_added, dict(summary.masks_added)) == (1, {"lung": 1})
    assert col["c"]["file"] not in dict(summary.failures)


def test_unknown_layout_lists_the_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown layout 'kaggle'; valid: covid-qu-ex, folder, manifest, "
                                               r"montgomery-shenzhen"):
        list_items(tmp_path, "kaggle")


def test_path_that_climbs_out_of_the_root_is_refused(tmp_path, sample_data, rows_where, manifest_collection):
    row = rows_where(1, dataset="Shenzhen")[0]
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(sample_data / row["file"], outside)
    manifest_collection(tmp_path / "col", [dict(row, file="../outside.jpg", lung_mask_file="")], copy=False)
    (problem,) = list_items(tmp_path / "col", "manifest")
    assert problem.name == "../outside.jpg" and "escapes the import root" in problem.reason


def test_linked_folder_escaping_the_root_is_refused(tmp_path, sample_data):
    root = tmp_path / "col"
    (root / "normal").mkdir(parents=True)
    shutil.copyfile(sample_data / "images" / "normal" / "MCUCXR_0001_0.jpg", root / "normal" / "a.jpg")
    os.symlink(sample_data / "images" / "sars", root / "sars")
    items = list_items(root, "folder")
    assert [getattr(i, "reason", None) is None for i in items] == [True, False]
    assert items[1].name == "sars" and "escapes the import root" in items[1].reason


def test_manifest_without_required_columns(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label\nimages/a.jpg,covid\n")
    with pytest.raises(AnnotatorError, match=r"manifest.csv: missing column\(s\) file, class; it needs at least"):
        list_items(tmp_path, "manifest")
