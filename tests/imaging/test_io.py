"""Reading every format a collection hands over to HxW uint8 grayscale, with the expected pixel values."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from annotator.errors import ImageReadError, MaskError
from annotator.imaging.io import file_sha256, load_image, read_image, read_mask, write_mask, write_png

# OpenCV's luma weights, rounded: pure red, green and blue become these grays
RED_GRAY, GREEN_GRAY, BLUE_GRAY = 76, 150, 29


def _write(path, arr):
    assert cv2.imwrite(str(path), arr), path
    return path


def _colour_bars(alpha: bool = False) -> np.ndarray:
    """An RGB(A) image (in RGB order): a red, a green and a blue column, then white."""
    rgb = np.zeros((2, 4, 4 if alpha else 3), np.uint8)
    rgb[:, 0, 0] = rgb[:, 1, 1] = rgb[:, 2, 2] = 255
    rgb[:, 3, :3] = 255
    if alpha:
        rgb[:, :, 3] = 7  # alpha is not the image: ignored
    return rgb


GRAY_8 = np.array([[0, 17, 128], [200, 254, 255]], np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_8bit_gray_reads_exactly(tmp_path, suffix):
    loaded = load_image(_write(tmp_path / f"g{suffix}", GRAY_8))
    assert loaded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(loaded.pixels, GRAY_8)
    assert loaded.bit_depth == 8


def test_jpeg_8bit_gray_within_compression_error(tmp_path):
    img = np.full((16, 16), 50, np.uint8)
    img[:, 8:] = 200
    path = tmp_path / "g.jpg"
    assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    pixels = read_image(path)
    assert pixels.shape == (16, 16) and pixels.dtype == np.uint8
    assert abs(int(pixels[4, 2]) - 50) <= 2 and abs(int(pixels[4, 13]) - 200) <= 2


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_is_stretched_to_8bit(tmp_path, suffix):
    img = np.array([[0, 1000], [2000, 4000]], np.uint16)  # a 12-bit detector's range
    loaded = load_image(_write(tmp_path / f"d{suffix}", img))
    assert loaded.bit_depth == 16
    # (v - 0) * 255 / 4000, rounded half up
    np.testing.assert_array_equal(loaded.pixels, [[0, 64], [128, 255]])


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".jpg"])
def test_rgb_becomes_luma(tmp_path, suffix):
    rgb = np.repeat(_colour_bars(), 8, axis=1).repeat(8, axis=0)  # 16x32, JPEG needs room
    pixels = read_image(_write(tmp_path / f"c{suffix}", np.ascontiguousarray(rgb[:, :, ::-1])))
    expected = np.array([RED_GRAY, GREEN_GRAY, BLUE_GRAY, 255])
    got = pixels[8, 4::8].astype(int)
    tolerance = 4 if suffix == ".jpg" else 0
    assert np.all(np.abs(got - expected) <= tolerance), got


def test_rgba_and_gray_alpha_png_ignore_alpha(tmp_path):
    PILImage.fromarray(_colour_bars(alpha=True), "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png")[0], [RED_GRAY, GREEN_GRAY, BLUE_GRAY, 255])
    la = np.zeros((3, 3, 2), np.uint8)
    la[..., 0], la[..., 1] = 100, 0
    PILImage.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), np.full((3, 3), 100))


def test_16bit_rgb_png(tmp_path):
    rgb = np.zeros((1, 2, 3), np.uint16)
    rgb[0, 1] = 65535  # white beside black
    pixels = read_image(_write(tmp_path / "c16.png", rgb))
    np.testing.assert_array_equal(pixels, [[0, 255]])


# -- DICOM ----------------------------------------------------------------------------------------------


def test_dicom_monochrome1_is_inverted(tmp_path, write_dicom):
    stored = np.array([[0, 100], [200, 255]], np.uint8)
    loaded = load_image(write_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1"))
    np.testing.assert_array_equal(loaded.pixels, 255 - stored)
    assert (loaded.bit_depth, loaded.view, loaded.patient_id) == (8, "PA", "P-042")


def test_dicom_16bit_without_window_is_stretched(tmp_path, write_dicom):
    stored = np.array([[0, 1000], [2000, 4000]], np.uint16)
    loaded = load_image(write_dicom(tmp_path / "m2.dcm", stored, bits_stored=12))
    np.testing.assert_array_equal(loaded.pixels, [[0, 64], [128, 255]])
    assert loaded.bit_depth == 12


def test_dicom_window_maps_its_range_not_the_image_range(tmp_path, write_dicom):
    # window centre 2048, width 1024, 12 bits stored (DICOM PS3.3 C.11.2.1.2.1, LINEAR):
    # y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped:
    #   1000 -> below the window -> 0; 2048 -> 128.12 -> 128; 2300 -> 190.44 -> 190; 2400 -> 215.37 -> 215
    stored = np.array([[1000, 2048], [2300, 2400]], np.uint16)
    path = write_dicom(tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    np.testing.assert_array_equal(read_image(path), [[0, 128], [190, 215]])
    # without the darkest pixel the window still decides: no stretching to the image's own min-max
    path = write_dicom(tmp_path / "w2.dcm", stored[1:], bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    np.testing.assert_array_equal(read_image(path), [[190, 215]])


def test_dicom_rescale_then_window(tmp_path, write_dicom):
    # stored 0, 1024, 2047, 4095 with intercept -1024 are -1024, 0, 1023, 3071; window c 0, w 2048 maps
    # (-1024, 1023.5] onto the display: -1024 -> 0, 0 -> ((0.5 / 2047) + 0.5) * 255 = 127.56 -> 128,
    # 1023 -> 254.99 -> 255, 3071 -> above -> 255
    stored = np.array([[0, 1024, 2047, 4095]], np.uint16)
    path = write_dicom(tmp_path / "hu.dcm", stored, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024,
                  WindowCenter=0, WindowWidth=2048)
    np.testing.assert_array_equal(read_image(path), [[0, 128, 255, 255]])


def test_dicom_monochrome1_with_window(tmp_path, write_dicom):
    stored = np.array([[1000, 2048, 3000]], np.uint16)
    path = write_dicom(tmp_path / "w1.dcm", stored, "MONOCHROME1", bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    np.testing.assert_array_equal(read_image(path), [[255, 127, 0]])


def test_dicom_without_suffix_is_recognised(tmp_path, write_dicom):
    stored = np.array([[10, 20]], np.uint8)
    np.testing.assert_array_equal(read_image(write_dicom(tmp_path / "IM0001", stored)), stored)


def test_dicom_without_pixel_data_names_the_file(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "empty.dcm", None)
    with pytest.raises(ImageReadError, match="no pixel data") as err:
        read_image(path)
    assert str(path) in str(err.value)


# -- bad files --------------------------------------------------------------------------------------------


def _jpeg_bytes(size=64) -> bytes:
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (size, size), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _png_bytes(size=64) -> bytes:
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(".png", rng.integers(0, 255, (size, size), dtype=np.uint8))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("zero.png", b"", "empty file"),
        ("notes.png", b"this is not an image\n", "not a readable image"),
        ("half.jpg", _jpeg_bytes()[:-600], "truncated JPEG|not a readable image"),
        ("half.png", _png_bytes()[: len(_png_bytes()) // 2], "truncated PNG|not a readable image"),
        ("tail.png", _png_bytes()[:-12], "truncated PNG|not a readable image"),
        ("image.gif", b"GIF89a....", "unsupported file type"),
    ],
)
def test_bad_files_raise_one_line_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="cannot open"):
        read_image(tmp_path / "nowhere.png")


# -- masks ------------------------------------------------------------------------------------------------


def test_mask_round_trip_and_hash(tmp_path):
    mask = np.zeros((5, 7), np.uint8)
    mask[1:4, 2:6] = 255
    digest = write_mask(tmp_path / "m" / "mask.png", mask)
    assert digest == file_sha256(tmp_path / "m" / "mask.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m" / "mask.png", (5, 7)), mask)
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_zero_one_mask_becomes_0_255_without_warning(tmp_path):
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    _write(tmp_path / "01.png", mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_mask(tmp_path / "01.png"), mask * 255)


def test_non_binary_mask_is_refused_unless_a_threshold_says_how_to_read_it(tmp_path):
    path = _write(tmp_path / "soft.png", np.array([[0, 100, 107, 100]], np.uint8))
    with pytest.raises(MaskError, match=r"soft\.png: not a binary mask \(3 levels: 0, 100, 107\).*--mask-threshold"):
        read_mask(path)
    np.testing.assert_array_equal(read_mask(path, threshold=104), [[0, 0, 255, 0]])
    np.testing.assert_array_equal(read_mask(path, threshold=100), [[0, 255, 255, 255]])


def test_single_level_mask_that_is_not_0_or_full_scale_is_refused(tmp_path):
    path = _write(tmp_path / "grey.png", np.full((3, 3), 100, np.uint8))
    with pytest.raises(MaskError, match=r"1 levels: 100"):
        read_mask(path)


def test_16bit_mask_full_scale_and_raw_threshold(tmp_path):
    path = _write(tmp_path / "m16.png", np.array([[0, 65535], [65535, 0]], np.uint16))
    np.testing.assert_array_equal(read_mask(path), [[0, 255], [255, 0]])
    levels = _write(tmp_path / "l16.png", np.array([[0, 100, 107, 0]], np.uint16))  # not stretched to 0..255
    with pytest.raises(MaskError, match=r"0, 100, 107"):
        read_mask(levels)
    np.testing.assert_array_equal(read_mask(levels, threshold=104), [[0, 0, 255, 0]])


def test_mask_of_other_size_is_refused_from_its_header(tmp_path, claim_png_size):
    path = tmp_path / "big.png"
    _write(path, np.zeros((4, 6), np.uint8))
    path.write_bytes(claim_png_size(path.read_bytes(), 40000, 40000))
    with pytest.raises(MaskError, match=r"mask is 40000x40000 but its image is 6x4"):
        read_mask(path, (4, 6))


def test_mask_of_other_size_is_a_mask_error_naming_the_file(tmp_path):
    path = _write(tmp_path / "m.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(MaskError, match=r"m\.png: mask is 6x4 but its image is 5x4"):
        read_mask(path, (4, 5))


def test_real_sample_mask_reads_as_0_255(sample_data):
    path = next((sample_data / "masks" / "lung").glob("*.png"))
    mask = read_mask(path)
    assert set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask, np.where(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) >= 128, 255, 0))


def test_write_png_rgb_round_trip(tmp_path):
    rgb = _colour_bars()
    write_png(tmp_path / "o.png", rgb)
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "o.png")), rgb)


def test_jpeg_missing_only_its_end_marker_is_truncated(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg_bytes()[:-2])  # older OpenCV decoded this with a warning; we refuse it either way
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_folder_named_like_an_image(tmp_path):
    (tmp_path / "scan.png").mkdir()
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path / "scan.png")
