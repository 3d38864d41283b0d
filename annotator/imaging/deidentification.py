"""De-identification of the stored copy of a DICOM file (``annotator data import --deidentify``).

pydicom 3.0 ships no de-identification profile (only ``Dataset.remove_private_tags``), so this module
applies the attributes of DICOM PS3.15 Annex E, Table E.1-1 (Basic Application Level Confidentiality
Profile) that occur in radiographs, with these actions, at every nesting level:

- Z (kept, emptied): Patient's Name, Patient ID, Birth Date, Sex, Study Date/Time, Accession Number,
  Referring Physician's Name, Study ID;
- X (removed): every attribute in ``REMOVED`` below, every other person name (VR PN), every other date,
  time and date-time (VR DA, TM, DT; the profile's "no retention of longitudinal temporal information"),
  every private attribute;
- U (replaced): Study, Series, SOP Instance, Frame of Reference and media SOP Instance UIDs, by UIDs
  derived from the workspace's ``pseudonym_key`` (the same original UID maps to the same new one);
- Patient Identity Removed = YES, De-identification Method names this profile.

Pixel data are kept as they are: text burned into the pixels is not found here. The patient id the
store records becomes a pseudonym (``pseudonym``) so patient-level splits still group a patient's images.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from annotator.errors import ConfigError, ImageReadError

METHOD = "cxr-annotator: PS3.15 E.1-1 basic profile (subset)"  # an LO: at most 64 characters
EMPTIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
           "AccessionNumber", "ReferringPhysicianName", "StudyID")
REMOVED = (
    "PatientBirthTime", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers",
    "PatientMotherBirthName", "MilitaryRank", "BranchOfService", "EthnicGroup", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "PatientReligiousPreference", "MedicalRecordLocator",
    "IssuerOfPatientID", "PatientInsurancePlanCodeSequence", "CountryOfResidence", "RegionOfResidence",
    "CurrentPatientLocation", "AdmissionID", "AdmittingDiagnosesDescription", "ReferencedPatientSequence",
    "ReferencedStudySequence", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionCodeSequence", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "PhysiciansOfRecord", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName",
    "RequestingPhysician", "ResponsiblePerson", "ResponsibleOrganization", "StationName", "DeviceSerialNumber",
    "StudyDescription", "SeriesDescription", "ImageComments", "RequestAttributesSequence",
    "PerformedProcedureStepDescription", "PerformedProcedureStepID", "ScheduledProcedureStepDescription",
    "RequestedProcedureDescription", "ProtocolName", "DerivationDescription", "AcquisitionComments",
    "FrameComments", "InterpretationText", "TextString", "ContentCreatorName", "PersonName",
    "InstanceCreatorUID", "IrradiationEventUID", "StorageMediaFileSetUID", "DigitalSignaturesSequence",
)
REPLACED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def _require_key(key: str) -> bytes:
    if not key:
        raise ConfigError("de-identification needs the workspace's pseudonym_key: run `annotator init` "
                          "(it writes one to the workspace's secrets.toml) or set ANNOTATOR_PSEUDONYM_KEY")
    return key.encode()


def pseudonym(value: str | None, key: str) -> str | None:
    """A stable, keyed stand-in for a patient id (None stays None): 'p-' + 16 hex characters."""
    if not value:
        return None
    return "p-" + hmac.new(_require_key(key), value.encode(), hashlib.sha256).hexdigest()[:16]


def _new_uid(uid: str, key: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[key, str(uid)])


def deidentify_dataset(ds, key: str) -> None:
    """Apply the profile in place (see the module's description)."""
    _require_key(key)
    ds.remove_private_tags()
    emptied = set(EMPTIED)
    removed = set(REMOVED)

    def visit(dataset, elem) -> None:
        if elem.keyword in emptied:
            elem.value = ""
        elif elem.keyword in removed or elem.VR in ("PN", "DA", "DT", "TM"):
            del dataset[elem.tag]
        elif elem.keyword in REPLACED_UIDS and elem.value:
            elem.value = _new_uid(elem.value, key)

    ds.walk(visit)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or _new_uid(meta.MediaStorageSOPInstanceUID, key)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD


def write_deidentified(src: Path, dest: Path, key: str) -> None:
    """Read a DICOM file, de-identify it, write it atomically to ``dest`` (an existing dest is kept)."""
    import pydicom

    if dest.exists():
        return
    try:
        ds = pydicom.dcmread(str(src))
    except Exception as exc:  # pydicom raises many types for bad files
        raise ImageReadError(src, f"not a readable DICOM file ({exc})") from exc
    try:
        deidentify_dataset(ds, key)
    except ConfigError:
        raise
    except Exception as exc:  # an element pydicom cannot convert: this file fails, the import goes on
        raise ImageReadError(src, f"cannot de-identify its header ({type(exc).__name__}: {exc})") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        ds.save_as(str(tmp), enforce_file_format=False)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
    except Exception as exc:  # pydicom's writer raises many types for odd datasets
        tmp.unlink(missing_ok=True)
        raise ImageReadError(src, f"cannot write its de-identified copy ({type(exc).__name__}: {exc})") from exc
    tmp.replace(dest)
