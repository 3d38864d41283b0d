"""Read any CXR a hospital or a public set hands over to an HxW uint8 grayscale array; masks as {0,255}.

Formats: 8- and 16-bit PNG, JPEG, BMP, TIFF (gray, RGB, RGBA) and DICOM (MONOCHROME1 inverted, the
modality and VOI LUT / window applied). Every failure is an ImageReadError naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from annotator.errors import ImageReadError, MaskError

log = logging.getLogger(__name__)

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom", ""}
IMAGE_SUFFIXES = RASTER_SUFFIXES | {".dcm", ".dicom"}


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: the 8-bit grayscale pixels and what the file said about itself."""

    pixels: np.ndarray  # HxW uint8
    bit_depth: int
    view: str | None = None
    patient_id: str | None = None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_dicom(path: Path) -> bool:
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric array to 0..255 by its min-max (16-bit, float); uint8 passes through."""
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip((arr - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def to_gray(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3]
        if arr.dtype != np.uint8:
            return (rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(arr.dtype)
        return cv2.cvtColor(np.ascontiguousarray(rgb[:, :, ::-1]), cv2.COLOR_BGR2GRAY)
    raise ValueError(f"unsupported pixel array shape {arr.shape}")


def _load_raster(path: Path) -> LoadedImage:
    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(path, "not a readable image (corrupt, truncated or another format)")
    if path.suffix.lower() in (".jpg", ".jpeg") and not _jpeg_complete(data):
        raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")
    if path.suffix.lower() == ".png" and not _png_complete(data):
        raise ImageReadError(path, "truncated PNG (no IEND chunk)")
    bit_depth = 16 if arr.dtype == np.uint16 else 8
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]  # OpenCV gives BGR
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    return LoadedImage(to_uint8(to_gray(arr)), bit_depth)


def _jpeg_complete(data: np.ndarray) -> bool:
    tail = data[-64:].tobytes()
    return b"\xff\xd9" in tail


def _png_complete(data: np.ndarray) -> bool:
    return b"IEND" in data[-32:].tobytes()


def _load_dicom(path: Path) -> LoadedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # pydicom raises many types for bad files
        raise ImageReadError(path, f"not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise ImageReadError(path, "DICOM file has no pixel data")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(path, f"DICOM pixel data cannot be decoded ({exc})") from exc
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME"):
        arr = apply_modality_lut(arr, ds)
        voi_range = _voi_output_range(ds)
        arr = np.asarray(apply_voi_lut(arr, ds), dtype=np.float64)
        if voi_range is None and bits <= 8 and arr.min() >= 0 and arr.max() <= 255:
            gray = np.rint(arr).astype(np.uint8)  # 8-bit data without a window is shown as stored
        elif voi_range is None:  # deeper data without a window: stretch the stored range
            gray = to_uint8(arr)
        else:  # a window maps its range onto the display range exactly, whatever the image holds
            lo, hi = voi_range
            gray = np.clip((arr - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
        if photometric == "MONOCHROME1":
            gray = 255 - gray
    else:
        gray = to_uint8(to_gray(np.asarray(arr)))
    view = str(getattr(ds, "ViewPosition", "") or "") or None
    patient = str(getattr(ds, "PatientID", "") or "") or None
    return LoadedImage(gray, bits, view=view, patient_id=patient)


def _voi_output_range(ds) -> tuple[float, float] | None:
    """The output range of the dataset's VOI LUT or window (as pydicom computes it), or None if it has none."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        return 0.0, float(2 ** int(descriptor[2]) - 1)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(getattr(ds, "PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return (lo, hi) if hi > lo else None


def load_image(path: Path | str) -> LoadedImage:
    """Decode a file to a LoadedImage or raise ImageReadError naming the file and the reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, f"cannot open ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        if path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path):
            return _load_dicom(path)
        if path.suffix.lower() not in RASTER_SUFFIXES:
            raise ImageReadError(path, f"unsupported file type {path.suffix!r}; use one of {sorted(IMAGE_SUFFIXES)}")
        return _load_raster(path)
    except OSError as exc:  # unreadable (permissions, I/O error): still one line naming the file
        raise ImageReadError(path, f"cannot read ({exc.strerror or exc})") from exc


def read_image(path: Path | str) -> np.ndarray:
    """The HxW uint8 grayscale pixels of any supported file."""
    return load_image(path).pixels


def binarize(mask: np.ndarray, path: Path | str | None = None) -> np.ndarray:
    """Threshold at 128 to {0,255}; warns when the input was not already binary."""
    if mask.dtype == np.uint8:  # a histogram is linear; np.unique sorts
        values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    else:
        values = np.unique(mask)
    if not np.isin(values, (0, 255)).all() and not np.isin(values, (0, 1)).all():
        warnings.warn(f"{path or 'mask'}: not binary ({len(values)} levels); thresholded at 128", stacklevel=2)
        log.debug("%s: mask not binary (%d levels); thresholded at 128", path or "mask", len(values))
    elif values.max(initial=0) == 1:
        return (mask > 0).astype(np.uint8) * 255
    return np.where(mask >= 128, 255, 0).astype(np.uint8)


def read_mask(path: Path | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A {0,255} uint8 mask; with ``shape`` (h, w) a size mismatch is a MaskError naming the file."""
    mask = binarize(read_image(path), path)
    if shape is not None and mask.shape != tuple(shape):
        raise MaskError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return mask


def encode_mask_png(mask: np.ndarray) -> bytes:
    mask = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
    ok, buf = cv2.imencode(".png", mask)
    if not ok:  # pragma: no cover - OpenCV never fails on a 2-D uint8 array
        raise MaskError("cannot encode mask as PNG")
    return buf.tobytes()


def write_mask(path: Path | str, mask: np.ndarray) -> str:
    """Write a {0,255} PNG atomically; returns the file's sha256."""
    path = Path(path)
    data = encode_mask_png(mask)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return bytes_sha256(data)


def write_png(path: Path | str, pixels: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = pixels
    if arr.ndim == 3:
        arr = arr[:, :, ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover
        raise ImageReadError(path, "cannot encode PNG")
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
