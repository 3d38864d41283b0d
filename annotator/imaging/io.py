"""Read any CXR a hospital or a public set hands over to an HxW uint8 grayscale array; masks as {0,255}.

Formats: 8- and 16-bit PNG, JPEG, BMP, TIFF (gray, RGB, RGBA) and DICOM (MONOCHROME1 inverted, the
modality and VOI LUT / window applied). Every failure is an ImageReadError naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from annotator.durability import write_bytes_durably
from annotator.errors import ImageReadError, MaskError
from annotator.imaging.limits import DEFAULT_LIMITS, ImageLimits, declared_raster_size

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


def _row_blocks(shape: tuple[int, ...], values: int = 1 << 20) -> list[slice]:
    """Row slices of about ``values`` elements: conversions run block by block, so a large image never
    needs a float64 copy of itself (8 bytes a pixel, times every temporary)."""
    per_row = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    step = max(1, values // per_row)
    return [slice(r, r + step) for r in range(0, shape[0], step)]


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric array to 0..255 by its min-max (16-bit, float); uint8 passes through."""
    if arr.dtype == np.uint8:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:  # constant (or NaN): nothing to stretch
        return np.zeros(arr.shape, np.uint8)
    out = np.empty(arr.shape, np.uint8)
    scale = 255.0 / (hi - lo)
    for rows in _row_blocks(arr.shape):
        out[rows] = np.clip((arr[rows].astype(np.float64) - lo) * scale + 0.5, 0, 255)
    return out


def to_gray(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3]
        if arr.dtype != np.uint8:
            out = np.empty(arr.shape[:2], arr.dtype)
            for rows in _row_blocks(rgb.shape):
                out[rows] = (rgb[rows].astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(arr.dtype)
            return out
        return cv2.cvtColor(np.ascontiguousarray(rgb[:, :, ::-1]), cv2.COLOR_BGR2GRAY)
    raise ValueError(f"unsupported pixel array shape {arr.shape}")


def _decode_raster(path: Path, limits: ImageLimits) -> tuple[np.ndarray, int]:
    """The file's gray pixels as stored (uint8 or uint16, not stretched) and its bit depth. The size its
    header declares is checked against the limits before anything is decoded."""
    width, height, fmt = declared_raster_size(path)
    limits.check(path, width, height)
    data = np.fromfile(str(path), dtype=np.uint8)
    if fmt == "JPEG" and not _jpeg_complete(data):
        raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")
    if fmt == "PNG" and not _png_complete(data):
        raise ImageReadError(path, "truncated PNG (no IEND chunk)")
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    del data
    if arr is None:
        raise ImageReadError(path, "not a readable image (corrupt, truncated or another format)")
    if arr.shape[:2] != (height, width):
        raise ImageReadError(path, f"decodes to {arr.shape[1]}x{arr.shape[0]} but declares {width}x{height}")
    bit_depth = arr.dtype.itemsize * 8  # 8, 16, or 32 for a float TIFF (stretched by its range like 16-bit)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]  # OpenCV gives BGR
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    return to_gray(arr), bit_depth


def _load_raster(path: Path, limits: ImageLimits) -> LoadedImage:
    gray, bit_depth = _decode_raster(path, limits)
    return LoadedImage(to_uint8(gray), bit_depth)


def _jpeg_complete(data: np.ndarray) -> bool:
    tail = data[-64:].tobytes()
    return b"\xff\xd9" in tail


def _png_complete(data: np.ndarray) -> bool:
    return b"IEND" in data[-32:].tobytes()


def _load_dicom(path: Path, limits: ImageLimits) -> LoadedImage:
    import pydicom

    try:  # large elements (the pixel data) stay on disk until the size they declare has been checked
        ds = pydicom.dcmread(str(path), defer_size="1 MB")
    except Exception as exc:  # pydicom raises many types for bad files
        raise ImageReadError(path, f"not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise ImageReadError(path, "DICOM file has no pixel data")
    try:
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(path, f"DICOM size elements are not numbers ({exc})") from exc
    limits.check(path, columns, rows, frames)
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames); a chest X-ray is one frame: save the one "
                                   "you mean as its own file")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(path, f"DICOM pixel data cannot be decoded ({exc})") from exc
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME") and np.ndim(arr) == 2:
        gray = _monochrome_to_uint8(np.asarray(arr), ds, bits)
        if photometric == "MONOCHROME1":
            np.subtract(255, gray, out=gray)
    else:
        gray = to_uint8(to_gray(np.asarray(arr)))
    if gray.ndim != 2:
        raise ImageReadError(path, f"DICOM pixel data has shape {gray.shape}, not one gray image")
    view = str(getattr(ds, "ViewPosition", "") or "") or None
    patient = str(getattr(ds, "PatientID", "") or "") or None
    return LoadedImage(gray, bits, view=view, patient_id=patient)


def _monochrome_to_uint8(stored: np.ndarray, ds, bits: int) -> np.ndarray:
    """Modality LUT, then VOI LUT or window, then 8 bits; row block by row block, so the float64 values
    never exist for the whole image (a 16 Mpx DICOM took 430 MB this way at once)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    def values(rows: slice) -> np.ndarray:
        return np.asarray(apply_voi_lut(apply_modality_lut(stored[rows], ds), ds), dtype=np.float64)

    blocks = _row_blocks(stored.shape)
    voi_range = _voi_output_range(ds)
    if voi_range is None:  # the stored range decides: a first pass finds it
        lo, hi = math.inf, -math.inf
        for rows in blocks:
            block = values(rows)
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    else:  # a window maps its range onto the display range exactly, whatever the image holds
        lo, hi = voi_range
    out = np.empty(stored.shape, np.uint8)
    as_stored = voi_range is None and bits <= 8 and lo >= 0 and hi <= 255  # 8-bit data without a window
    if not as_stored and not hi > lo:
        out[:] = 0
        return out
    for rows in blocks:
        block = values(rows)
        out[rows] = np.rint(block) if as_stored else np.clip((block - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255)
    return out


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


def _checked_path(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, f"cannot open ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")


def _is_dicom_path(path: Path) -> bool:
    return path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path)


def load_image(path: Path | str, limits: ImageLimits = DEFAULT_LIMITS) -> LoadedImage:
    """Decode a file to a LoadedImage or raise ImageReadError naming the file and the reason.

    The size the file declares is checked against ``limits`` before its pixels are decoded.
    """
    path = Path(path)
    _checked_path(path)
    try:
        if _is_dicom_path(path):
            return _load_dicom(path, limits)
        if path.suffix.lower() not in RASTER_SUFFIXES:
            raise ImageReadError(path, f"unsupported file type {path.suffix!r}; use one of {sorted(IMAGE_SUFFIXES)}")
        return _load_raster(path, limits)
    except OSError as exc:  # unreadable (permissions, I/O error): still one line naming the file
        raise ImageReadError(path, f"cannot read ({exc.strerror or exc})") from exc
    except (ValueError, cv2.error, MemoryError) as exc:  # a decoder that gave up on this file
        raise ImageReadError(path, f"cannot be decoded ({type(exc).__name__}: {str(exc).strip()[:200]})") from exc


def read_image(path: Path | str, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The HxW uint8 grayscale pixels of any supported file."""
    return load_image(path, limits).pixels


def binarize(mask: np.ndarray, path: Path | str | None = None, threshold: float | None = None) -> np.ndarray:
    """A {0,255} uint8 mask. Without ``threshold`` the input must already be binary: {0, full scale} or
    {0, 1} (a MaskError names the file and its levels otherwise); with it, ``value >= threshold`` is inside."""
    full = 65535 if mask.dtype == np.uint16 else 255
    if threshold is not None:
        return np.where(mask >= threshold, 255, 0).astype(np.uint8)
    if mask.dtype in (np.uint8, np.uint16):  # a histogram is linear; np.unique sorts
        values = np.flatnonzero(np.bincount(mask.ravel(), minlength=2))
    else:
        values = np.unique(mask)
    if np.isin(values, (0, 1)).all():
        return (mask > 0).astype(np.uint8) * 255
    if np.isin(values, (0, full)).all():
        return np.where(mask > 0, 255, 0).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
    raise MaskError(f"{path or 'mask'}: not a binary mask ({len(values)} levels: {shown}); a mask holds 0 and "
                    f"{full} (or 0 and 1). Say how to read it with --mask-threshold N (value >= N is inside)")


def read_mask(path: Path | str, shape: tuple[int, int] | None = None, threshold: float | None = None) -> np.ndarray:
    """A {0,255} uint8 mask from a binary mask file (see ``binarize``); with ``shape`` (h, w) a size mismatch
    is a MaskError naming the file, found from the header before decoding."""
    path = Path(path)
    _checked_path(path)
    try:
        if _is_dicom_path(path):
            raw = load_image(path).pixels
        else:
            if shape is not None:
                width, height, _ = declared_raster_size(path)
                _check_mask_shape(path, (height, width), shape)
            raw, _ = _decode_raster(path, DEFAULT_LIMITS)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read ({exc.strerror or exc})") from exc
    except (ValueError, cv2.error, MemoryError) as exc:
        raise ImageReadError(path, f"cannot be decoded ({type(exc).__name__}: {str(exc).strip()[:200]})") from exc
    if shape is not None:
        _check_mask_shape(path, raw.shape, shape)
    return binarize(raw, path, threshold)


def _check_mask_shape(path: Path, found: tuple[int, ...], shape: tuple[int, int]) -> None:
    if tuple(found) != tuple(shape):
        raise MaskError(f"{path}: mask is {found[1]}x{found[0]} but its image is {shape[1]}x{shape[0]}")


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
    write_bytes_durably(path, data)
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
    write_bytes_durably(path, buf.tobytes())
