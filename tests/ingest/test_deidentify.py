"""Patient data: a DICOM's original lives outside the folder Label Studio serves (tasks see only the view
PNG), and `data import --deidentify` stores a copy without the identifying header fields."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotator.cli.main import app
from annotator.config import load_settings
from annotator.imaging.io import read_image
from db.engine import session_scope
from db.models import Image

NAME, MRN = "Doe^Jane", "MRN-0042-7781"


def write_dicom(path: Path, pixels: np.ndarray) -> Path:
    """A real CXR's pixels in a DICOM whose header names the patient, the physicians and the hospital."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = NAME, MRN, "19610203", "F"
    ds.PatientAddress, ds.InstitutionName = "12 Elm Street, Springfield", "St. Example Hospital"
    ds.ReferringPhysicianName, ds.OperatorsName, ds.StudyDate = "House^Gregory", "Tech^Tom", "20200314"
    ds.AccessionNumber, ds.ViewPosition, ds.Modality = "ACC778899", "PA", "DX"
    item = Dataset()
    item.PersonName = "Nested^Person"
    ds.ContentSequence = Sequence([item])
    ds.add_new(0x00090010, "LO", "ACME private")
    ds.add_new(0x00091001, "LO", "Jane Doe again")
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def dicom_folder(tmp_path, sample_data) -> tuple[Path, np.ndarray]:
    with (sample_data / "manifest.csv").open(newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["width"] == r["height"] == "256")
    pixels = read_image(sample_data / row["file"])
    write_dicom(tmp_path / "dicoms" / "normal" / "doe_jane.dcm", pixels)
    return tmp_path / "dicoms", pixels


def _import(ws: Path, folder: Path, *extra: str):
    return CliRunner().invoke(app, ["-w", str(ws), "data", "import", str(folder), "--layout", "folder", *extra],
                              catch_exceptions=False)


def _only_image(ws: Path) -> Image:
    with session_scope(f"sqlite:///{ws / 'annotator.db'}") as session:
        image = session.scalars(select(Image)).one()
        session.expunge(image)
        return image


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_original_lives_outside_the_served_store_and_tasks_see_the_view(tmp_path, dicom_folder):
    import pydicom

    folder, pixels = dicom_folder
    ws = tmp_path / "ws"
    assert _import(ws, folder).exit_code == 0
    image = _only_image(ws)
    settings = load_settings(workspace=ws)
    original = ws / image.attributes["original_store_path"]
    assert original.is_relative_to(settings.originals_path) and not original.is_relative_to(settings.store_path)
    assert pydicom.dcmread(original).PatientName == NAME  # kept whole without --deidentify
    view = ws / image.store_path
    assert view.is_relative_to(settings.image_store) and view.name.endswith(".view.png")
    assert np.array_equal(read_image(view), pixels)
    assert image.patient_id == MRN
    assert _files_holding(settings.store_path, NAME.encode()) == []  # nothing Label Studio serves names her
    assert _files_holding(settings.store_path, MRN.encode()) == []
    from annotator.labelstudio.client import LabelStudio
    from annotator.labelstudio.tasks import TaskIn

    payload = LabelStudio(settings).task_payload(TaskIn(image.id, "ra_review", view), pixels.shape)
    assert payload["data"]["image"] == f"/data/local-files/?d={view.relative_to(settings.store_path).as_posix()}"


def test_deidentify_stores_a_copy_without_names_ids_dates_or_private_tags(tmp_path, dicom_folder):
    import pydicom

    folder, pixels = dicom_folder
    ws = tmp_path / "ws"
    result = _import(ws, folder, "--deidentify")
    assert result.exit_code == 0, result.output
    image = _only_image(ws)
    stored = pydicom.dcmread(ws / image.attributes["original_store_path"])
    assert str(stored.PatientName) == "" and stored.PatientID == "" and stored.PatientBirthDate == ""
    for keyword in ("PatientAddress", "InstitutionName", "OperatorsName"):
        assert keyword not in stored
    assert stored.ReferringPhysicianName == "" and stored.AccessionNumber == "" and stored.StudyDate == ""
    assert "PersonName" not in stored.ContentSequence[0]  # nested person names go too
    assert not any(elem.tag.is_private for elem in stored.iterall())
    assert stored.PatientIdentityRemoved == "YES" and stored.DeidentificationMethod.startswith("cxr-annotator")
    assert stored.ViewPosition == "PA" and np.array_equal(stored.pixel_array, pixels)  # pixels untouched
    assert stored.file_meta.MediaStorageSOPInstanceUID == stored.SOPInstanceUID
    original = pydicom.dcmread(folder / "normal" / "doe_jane.dcm")
    assert stored.StudyInstanceUID != original.StudyInstanceUID
    assert _files_holding(ws, NAME.encode()) == [] and _files_holding(ws, b"Jane Doe") == []
    assert _files_holding(ws, MRN.encode()) == []  # the DB keeps a keyed pseudonym, not the MRN
    assert image.patient_id.startswith("p-") and len(image.patient_id) == 18
    validate = CliRunner().invoke(app, ["-w", str(ws), "data", "validate"], catch_exceptions=False)
    assert validate.exit_code == 0, validate.output


def test_deidentified_originals_are_restored_deidentified_and_pseudonyms_are_stable(tmp_path, dicom_folder):
    import pydicom

    folder, _ = dicom_folder
    ws = tmp_path / "ws"
    assert _import(ws, folder, "--deidentify").exit_code == 0
    image = _only_image(ws)
    stored_path = ws / image.attributes["original_store_path"]
    first_bytes = stored_path.read_bytes()
    stored_path.unlink()
    assert _import(ws, folder, "--deidentify").exit_code == 0  # a re-import restores the missing copy
    assert stored_path.read_bytes() == first_bytes and str(pydicom.dcmread(stored_path).PatientName) == ""
    assert _only_image(ws).patient_id == image.patient_id
    other = tmp_path / "other"
    assert _import(other, folder, "--deidentify").exit_code == 0
    assert _only_image(other).patient_id != image.patient_id  # keyed per workspace: not linkable across them


def test_init_moves_the_originals_of_an_older_workspace_out_of_the_served_store(tmp_path, dicom_folder):
    folder, _ = dicom_folder
    ws = tmp_path / "ws"
    assert _import(ws, folder).exit_code == 0
    image = _only_image(ws)
    new_rel = image.attributes["original_store_path"]
    old_rel = "store/images/" + new_rel.removeprefix("originals/")  # where older versions kept it
    (ws / old_rel).parent.mkdir(parents=True, exist_ok=True)
    (ws / new_rel).rename(ws / old_rel)
    with session_scope(f"sqlite:///{ws / 'annotator.db'}") as session:
        row = session.get(Image, image.id)
        row.attributes = {**row.attributes, "original_store_path": old_rel}
    assert _files_holding(ws / "store", NAME.encode()) == [ws / old_rel]
    assert CliRunner().invoke(app, ["-w", str(ws), "init"], catch_exceptions=False).exit_code == 0
    assert _only_image(ws).attributes["original_store_path"] == new_rel and (ws / new_rel).is_file()
    assert _files_holding(ws / "store", NAME.encode()) == []
    validate = CliRunner().invoke(app, ["-w", str(ws), "data", "validate"], catch_exceptions=False)
    assert validate.exit_code == 0, validate.output


def test_deidentify_without_a_pseudonym_key_stops_before_anything_is_imported(tmp_path, dicom_folder):
    from annotator.errors import ConfigError
    from annotator.ingest.importer import import_items, list_items

    folder, _ = dicom_folder
    settings = load_settings(workspace=tmp_path / "ws")  # no `init`: no secrets file, no key
    settings.workspace_path.mkdir(parents=True)
    from db.engine import migrate

    migrate(settings.database_url)
    with session_scope(settings.database_url) as session, pytest.raises(
            ConfigError, match=r"de-identification needs the workspace's pseudonym_key: run `annotator init`"):
        import_items(session, settings, list_items(folder, "folder"), "folder", deidentify=True)
    assert not settings.originals_path.exists() and not settings.image_store.exists()
