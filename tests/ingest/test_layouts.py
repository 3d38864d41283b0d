"""The covid-qu-ex, montgomery-shenzhen and folder layouts on trees built from real sample images."""

from __future__ import annotations

import os
import re
import shutil

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from annotator.errors import AnnotatorError
from annotator.imaging.io import read_image, read_mask
from annotator.ingest.importer import import_collection, list_items
from annotator.ingest.layouts import ImportItem, ItemProblem, normalise_class
from db.engine import session_scope
from db.models import Image, Mask

QUEX_SOURCE = re.compile(r"datasets/(?P<tree>.+ Segmentation Data)/(?P<split>\w+)/(?P<cls>[^/]+)/images/(?P<name>.+)$")

PX7 = {"bits_stored": 12, "PatientID": "PX-7", "ViewPosition": "AP"}  # a 12-in-16-bit DICOM of patient PX-7


def _to_png(src, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(dest), read_image(src))


@pytest.fixture
def quex_tree(tmp_path, sample_data, rows_where):
    """The published COVID-QU-Ex folder tree, with the 12 sample rows at their published places
    (``Infection Segmentation Data``, with infection masks), plus two Lung-tree-only images."""
    root = tmp_path / "COVID-QU-Ex"
    rows = rows_where(12, dataset="COVID-QU-Ex")
    for row in rows:
        m = QUEX_SOURCE.search(row["source"])
        class_dir = root / m["tree"] / m["split"] / m["cls"]
        _to_png(sample_data / row["file"], class_dir / "images" / m["name"])
        _to_png(sample_data / row["lung_mask_file"], class_dir / "lung masks" / m["name"])
        _to_png(sample_data / row["infection_mask_file"], class_dir / "infection masks" / m["name"])
    for i, row in enumerate(rows_where(2, dataset="Shenzhen", lung_mask_file=True)):
        class_dir = root / "Lung Segmentation Data" / "Train" / ("Normal" if i == 0 else "Non-COVID")
        _to_png(sample_data / row["file"], class_dir / "images" / f"extra_{i}.png")
        _to_png(sample_data / row["lung_mask_file"], class_dir / "lung masks" / f"extra_{i}.png")
    return root, rows


def test_covid_qu_ex_items(quex_tree):
    root, rows = quex_tree
    items = list_items(root, "covid-qu-ex")
    assert all(isinstance(i, ImportItem) for i in items) and len(items) == 14
    classes = {}
    for item in items:
        classes[item.cls] = classes.get(item.cls, 0) + 1
        assert item.dataset == "COVID-QU-Ex" and item.lung_mask_path is not None
    assert classes == {"covid": 4, "non_covid_pneumonia": 5, "normal": 5}
    infection = [i for i in items if i.infection_mask_path is not None]
    assert len(infection) == 12
    assert {i.attributes["source_split"] for i in infection} == {"test"}
    extra = next(i for i in items if i.name.endswith("extra_0.png"))
    assert extra.name == os.path.join("Lung Segmentation Data", "Train", "Normal", "images", "extra_0.png")
    assert extra.infection_mask_path is None and extra.attributes["source_tree"] == "Lung Segmentation Data"


def test_covid_qu_ex_import(workspace, quex_tree, sample_data):
    root, rows = quex_tree
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, root, "covid-qu-ex")
    assert summary.ok and summary.images_added == 14
    assert dict(summary.masks_added) == {"lung": 14, "infection": 12}
    with session_scope(workspace.database_url) as session:
        image = session.scalar(select(Image).where(Image.file_name.like("%covid_1579.png")))
        infection = session.scalar(select(Mask).where(Mask.image_id == image.id, Mask.kind == "infection"))
        stored = read_mask(workspace.workspace_path / infection.store_path)
        row = next(r for r in rows if "covid_1579" in r["file"])
        np.testing.assert_array_equal(stored, read_mask(sample_data / row["infection_mask_file"]))
        assert (image.cls, infection.origin, infection.version) == ("covid", "seed", 1)


def test_covid_qu_ex_nested_as_in_the_kaggle_archive(quex_tree):
    root, _ = quex_tree
    for tree in ("Lung Segmentation Data", "Infection Segmentation Data"):
        (root / tree).rename(root / "tmp")
        (root / tree).mkdir()
        (root / "tmp").rename(root / tree / tree)
    items = list_items(root, "covid-qu-ex")
    assert len(items) == 14 and sum(i.infection_mask_path is not None for i in items) == 12


def test_covid_qu_ex_needs_its_trees(tmp_path):
    with pytest.raises(AnnotatorError, match="Lung Segmentation Data.*is this COVID-QU-Ex"):
        list_items(tmp_path, "covid-qu-ex")


@pytest.fixture
def montgomery_tree(tmp_path, sample_data, rows_where):
    """Montgomery's published form: CXR_png/ and ManualMask/{leftMask,rightMask}/ by file name."""
    root = tmp_path / "MontgomerySet"
    rows = rows_where(3, dataset="Montgomery", lung_mask_file=True)
    for row in rows:
        name = os.path.basename(row["file"]).replace(".jpg", ".png")
        _to_png(sample_data / row["file"], root / "CXR_png" / name)
        mask = read_mask(sample_data / row["lung_mask_file"])
        half = mask.shape[1] // 2
        left, right = mask.copy(), mask.copy()
        left[:, half:] = 0  # the patient's right lung is on the image's left: the split is what matters
        right[:, :half] = 0
        for side, part in (("leftMask", left), ("rightMask", right)):
            (root / "ManualMask" / side).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "ManualMask" / side / name), part)
    (root / "CXR_png" / "Thumbs.db").write_bytes(b"not an image")  # skipped: not an image suffix
    return root, rows


def test_montgomery_left_and_right_masks_are_unioned(workspace, montgomery_tree, sample_data):
    root, rows = montgomery_tree
    items = list_items(root, "montgomery-shenzhen")
    assert len(items) == 3
    first = items[0]
    assert (first.dataset, first.cls, first.patient_id) == ("Montgomery", "normal", "MCUCXR_0001")
    assert first.lung_mask_path.parent.name == "leftMask" and first.lung_mask_parts[0].parent.name == "rightMask"
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, root, "montgomery-shenzhen")
        assert summary.ok and (summary.images_added, summary.masks_added["lung"]) == (3, 3)
        for row in rows:
            name = os.path.basename(row["file"]).replace(".jpg", ".png")
            image = session.scalar(select(Image).where(Image.file_name == f"CXR_png/{name}"))
            mask = session.scalar(select(Mask).where(Mask.image_id == image.id))
            np.testing.assert_array_equal(read_mask(workspace.workspace_path / mask.store_path),
                                          read_mask(sample_data / row["lung_mask_file"]))


def test_montgomery_mask_missing_one_side_is_refused(montgomery_tree):
    root, rows = montgomery_tree
    lone = sorted((root / "ManualMask" / "rightMask").iterdir())[1]
    lone.unlink()
    items = list_items(root, "montgomery-shenzhen")
    problems = [i for i in items if isinstance(i, ItemProblem)]
    assert [p.name for p in problems] == [f"CXR_png/{lone.name}"]
    assert "lung mask incomplete" in problems[0].reason and "no rightMask partner" in problems[0].reason
    assert sum(isinstance(i, ImportItem) for i in items) == 2


def test_shenzhen_masks_by_name_with_mask_suffix(workspace, tmp_path, sample_data, rows_where):
    root = tmp_path / "ChinaSet"
    rows = rows_where(2, dataset="Shenzhen", lung_mask_file=True, **{"class": "tuberculosis"})
    for row in rows:
        stem = os.path.basename(row["file"])[:-4]
        _to_png(sample_data / row["file"], root / "images" / f"{stem}.png")
        _to_png(sample_data / row["lung_mask_file"], root / "masks" / f"{stem}_mask.png")
    _to_png(sample_data / rows[0]["file"], root / "images" / "unnamed_scan.png")  # no NLM name, no mask
    items = list_items(root, "montgomery-shenzhen")
    named = [i for i in items if i.dataset == "Shenzhen"]
    assert [(i.cls, i.lung_mask_path.name.endswith("_mask.png")) for i in named] == [("tuberculosis", True)] * 2
    other = next(i for i in items if i.name.endswith("unnamed_scan.png"))
    assert (other.cls, other.dataset, other.lung_mask_path) == (None, None, None)
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, root, "montgomery-shenzhen")
    # unnamed_scan.png is the same content as the first image: noted as a duplicate
    assert (summary.images_added, summary.masks_added["lung"], len(summary.duplicates)) == (2, 2, 1)


def test_montgomery_shenzhen_needs_an_images_folder(tmp_path):
    with pytest.raises(AnnotatorError, match="no images/"):
        list_items(tmp_path, "montgomery-shenzhen")


@pytest.fixture
def folder_tree(tmp_path, sample_data, write_dicom):
    """covid/ and normal/ sub-folders with PNG, JPEG, BMP, TIFF (16-bit) and DICOM files, plus bad ones."""
    root = tmp_path / "hospital"
    covid = sorted((sample_data / "images" / "covid").glob("*.jpg"))[:3]
    normal = sorted((sample_data / "images" / "normal").glob("*.jpg"))[:3]
    (root / "covid").mkdir(parents=True)
    shutil.copyfile(covid[0], root / "covid" / "a.jpg")
    _to_png(covid[1], root / "covid" / "b.png")
    cv2.imwrite(str(root / "covid" / "c.tif"), read_image(covid[2]).astype(np.uint16) * 16)  # 12-bit in 16
    _to_png(normal[0], root / "Normal" / "d.png")
    cv2.imwrite(str(root / "Normal" / "e.bmp"), read_image(normal[1]))
    write_dicom(root / "Normal" / "series" / "IM0001", read_image(normal[2]).astype(np.uint16) * 16, **PX7)
    write_dicom(root / "Normal" / "nopixels.dcm", None, PatientID="PX-7", ViewPosition="AP")
    (root / "Normal" / "readme.txt").write_text("ignored: not an image")
    (root / "Normal" / "._d.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # ignored: a dotfile
    (root / "Normal" / "zero.png").write_bytes(b"")
    os.symlink(sample_data / "images" / "sars" / sorted(os.listdir(sample_data / "images" / "sars"))[0],
               root / "covid" / "linked.jpg")
    return root


def test_folder_layout_classes_formats_and_bad_files(workspace, folder_tree):
    items = list_items(folder_tree, "folder")
    good = {i.name: i.cls for i in items if isinstance(i, ImportItem)}
    problems = {p.name: p.reason for p in items if isinstance(p, ItemProblem)}
    assert problems.keys() == {"covid/linked.jpg"} and "escapes the import root" in problems["covid/linked.jpg"]
    assert good == {"covid/a.jpg": "covid", "covid/b.png": "covid", "covid/c.tif": "covid",
                    "Normal/d.png": "normal", "Normal/e.bmp": "normal", "Normal/series/IM0001": "normal",
                    "Normal/nopixels.dcm": "normal", "Normal/zero.png": "normal"}
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, folder_tree, "folder")
    failures = dict(summary.failures)
    assert failures.keys() == {"covid/linked.jpg", "Normal/nopixels.dcm", "Normal/zero.png"}
    assert "no pixel data" in failures["Normal/nopixels.dcm"] and "nopixels.dcm" in failures["Normal/nopixels.dcm"]
    assert summary.images_added == 6
    with session_scope(workspace.database_url) as session:
        rows = {i.file_name: i for i in session.scalars(select(Image))}
        dicom, tiff = rows["Normal/series/IM0001"], rows["covid/c.tif"]
        assert (dicom.bit_depth, dicom.patient_id, dicom.view, dicom.dataset) == (12, "PX-7", "AP", "hospital")
        assert tiff.bit_depth == 16 and rows["covid/a.jpg"].bit_depth == 8
        # originals kept; people and networks see an 8-bit PNG next to them
        for row in (dicom, tiff, rows["Normal/e.bmp"]):
            assert row.store_path.endswith(".view.png")
            assert (workspace.workspace_path / row.attributes["original_store_path"]).is_file()
            view = read_image(workspace.workspace_path / row.store_path)
            assert view.shape == (row.height, row.width)
        assert rows["covid/a.jpg"].store_path.endswith(".jpg") and "original_store_path" not in rows["covid/a.jpg"].attributes


def test_folder_layout_class_option_wins(workspace, folder_tree):
    items = [i for i in list_items(folder_tree, "folder", cls="COVID-19") if isinstance(i, ImportItem)]
    assert {i.cls for i in items} == {"covid"}
    flat = folder_tree / "covid"
    assert {i.cls for i in list_items(flat, "folder") if isinstance(i, ImportItem)} == {None}


@pytest.mark.parametrize(("name", "expected"), [("COVID-19", "covid"), ("Non-COVID", "non_covid_pneumonia"),
                                                ("Viral Pneumonia", "non_covid_pneumonia"), ("TB", "tuberculosis"),
                                                ("Lung Opacity", "lung_opacity"), ("normal", "normal")])
def test_normalise_class(name, expected):
    assert normalise_class(name) == expected


def test_sample_manifest_lists_every_row(sample_data, manifest_rows):
    items = list_items(sample_data, "manifest")
    assert len(items) == len(manifest_rows) == 922
    assert all(isinstance(i, ImportItem) for i in items)
    assert sum(i.lung_mask_path is not None for i in items) == 783
    assert sum(i.infection_mask_path is not None for i in items) == 12
