"""Image sizes read from headers, caps checked before decoding, and the memory a large valid image costs."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from annotator.errors import ImageReadError
from annotator.imaging.io import load_image
from annotator.imaging.limits import ImageLimits, declared_raster_size


@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP"), (".tif", "TIFF")])
def test_declared_size_is_read_from_the_header(tmp_path, suffix, fmt):
    path = tmp_path / f"x{suffix}"
    assert cv2.imwrite(str(path), np.zeros((37, 91), np.uint8))
    assert declared_raster_size(path) == (91, 37, fmt)


def test_content_decides_the_format_not_the_suffix(tmp_path):
    path = tmp_path / "really_a_jpeg.png"
    assert cv2.imwrite(str(tmp_path / "x.jpg"), np.full((70, 80), 9, np.uint8))
    path.write_bytes((tmp_path / "x.jpg").read_bytes())
    assert declared_raster_size(path) == (80, 70, "JPEG")
    assert load_image(path).pixels.shape == (70, 80)  # not refused as a "truncated PNG"


def _peak(func):
    tracemalloc.start()
    try:
        result = func()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bomb_is_refused_before_anything_is_allocated(tmp_path, claim_png_size):
    path = tmp_path / "bomb.png"
    path.write_bytes(claim_png_size(cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes(), 30000, 30000))

    def load():
        with pytest.raises(ImageReadError, match=r"declares 30000x30000 = 900.0 Mpx, over the cap of 50 Mpx"):
            load_image(path)

    _, peak = _peak(load)
    assert peak < 1 << 20, peak


@pytest.mark.parametrize(("kind", "cap_mib"), [("gray8", 100), ("gray16", 100), ("rgb", 100), ("dicom", 160)])
def test_large_valid_image_imports_in_bounded_memory(workspace, tmp_path, write_dicom, kind, cap_mib):
    """A 4000x4000 image (a PNG of a few KB): ~400 MB before issue 11 (a windowed DICOM too), now the pixels
    and a few row blocks."""
    from annotator.ingest.importer import import_items
    from annotator.ingest.items import ImportItem
    from db.engine import session_scope

    gray = np.zeros((4000, 4000), np.uint8)
    gray[1000:3000, 800:3200] = 200
    if kind == "dicom":
        path = write_dicom(tmp_path / "big.dcm", gray.astype(np.uint16) * 16, bits_stored=12, WindowCenter=2048,
                           WindowWidth=1024, RescaleSlope=1, RescaleIntercept=-1024)
    else:
        arr = {"gray8": gray, "gray16": gray.astype(np.uint16) * 257, "rgb": np.dstack([gray] * 3)}[kind]
        path = tmp_path / f"{kind}.png"
        assert cv2.imwrite(str(path), arr) and path.stat().st_size < 100_000
        del arr
    del gray

    def run():
        with session_scope(workspace.database_url) as session:
            return import_items(session, workspace, [ImportItem(path, path.name, cls="normal")], "folder")

    summary, peak = _peak(run)
    assert summary.images_added == 1, summary.failures
    assert peak < cap_mib << 20, f"{peak / 2**20:.0f} MiB"
    print(f"{kind}: peak {peak / 2**20:.0f} MiB")


def test_caps_are_limits_the_caller_passes(tmp_path):
    path = tmp_path / "small.png"
    assert cv2.imwrite(str(path), np.zeros((40, 200), np.uint8))
    assert load_image(path).pixels.shape == (40, 200)  # the default limits do not judge the side
    with pytest.raises(ImageReadError, match=r"is 200x40, smaller than 64 px on a side"):
        load_image(path, ImageLimits(min_side_px=64))
    with pytest.raises(ImageReadError, match=r"over the cap of 0.005 Mpx"):
        load_image(path, ImageLimits(max_pixels=5000))


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.zeros((64, 64), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".bmp", np.zeros((64, 64), np.uint8))[1].tobytes())
    data[18:26] = width.to_bytes(4, "little", signed=True) + height.to_bytes(4, "little", signed=True)
    return bytes(data)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".dcm"])
def test_bombs_of_every_format_are_refused_from_the_header(tmp_path, write_dicom, suffix):
    path = tmp_path / f"bomb{suffix}"
    if suffix == ".dcm":
        write_dicom(path, np.zeros((8, 8), np.uint16), Rows=60000, Columns=60000)
    else:
        path.write_bytes(_jpeg_claiming(60000, 60000) if suffix == ".jpg" else _bmp_claiming(60000, -60000))

    def load():
        with pytest.raises(ImageReadError, match=r"declares 60000x60000 = 3600.0 Mpx, over the cap of 50 Mpx"):
            load_image(path)

    _, peak = _peak(load)
    assert peak < 4 << 20, peak
