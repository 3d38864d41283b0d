"""Label Studio brush RLE: exact round trips at odd sizes, unions of strokes, malformed input."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from annotator.errors import MaskError
from annotator.imaging.io import read_mask
from annotator.imaging.rle import mask_to_rle, rle_to_mask, union_rles


def _random_mask(h, w, seed):
    return np.where(np.random.default_rng(seed).random((h, w)) > 0.5, 255, 0).astype(np.uint8)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 5), (5, 7), (1, 13), (255, 257)])
@pytest.mark.parametrize("fill", ["empty", "full", "random"])
def test_round_trip_is_exact(h, w, fill):
    mask = {"empty": np.zeros((h, w), np.uint8), "full": np.full((h, w), 255, np.uint8),
            "random": _random_mask(h, w, h * 1000 + w)}[fill]
    rle = mask_to_rle(mask)
    assert all(isinstance(v, int) for v in rle)  # JSON-ready
    back = rle_to_mask(rle, h, w)
    assert back.dtype == np.uint8 and back.shape == (h, w)
    np.testing.assert_array_equal(back, mask)


def test_rle_is_what_label_studio_decodes():
    """Label Studio reads our RLE as RGBA with the mask in alpha (decode_rle(rle).reshape(h, w, 4)[..., 3])."""
    mask = np.zeros((7, 5), np.uint8)
    mask[2:5, 1:3] = 255
    alpha = np.asarray(decode_rle(mask_to_rle(mask))).reshape(7, 5, 4)[:, :, 3]
    np.testing.assert_array_equal(alpha, mask)


def test_bool_and_0_1_masks_encode_like_0_255():
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    assert mask_to_rle(mask) == mask_to_rle(mask.astype(np.uint8)) == mask_to_rle(mask.astype(np.uint8) * 255)


def test_real_sample_mask_round_trip(sample_data):
    path = sorted((sample_data / "masks" / "lung").glob("*.png"))[0]
    mask = read_mask(path)
    h, w = mask.shape
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask), h, w), mask)


def test_union_of_brush_regions():
    left = np.zeros((6, 9), np.uint8)
    left[1:5, 1:4] = 255
    right = np.zeros((6, 9), np.uint8)
    right[1:5, 3:8] = 255  # overlaps column 3
    union = union_rles([mask_to_rle(left), mask_to_rle(right)], 6, 9)
    assert int(np.count_nonzero(union)) == 4 * 3 + 4 * 5 - 4
    np.testing.assert_array_equal(union, np.maximum(left, right))
    np.testing.assert_array_equal(union_rles([], 6, 9), np.zeros((6, 9), np.uint8))


def test_wrong_size_is_a_mask_error():
    rle = mask_to_rle(np.zeros((7, 5), np.uint8))
    with pytest.raises(MaskError, match=r"holds 35 pixels, expected 5x7=35|expected 6x6=36"):
        rle_to_mask(rle, 6, 6)


@pytest.mark.parametrize("garbage", [[], [1, 2, 3], [0, 0, 0, 0, 0, 0], [255] * 40, [-5, 7, 300]])
def test_malformed_rle_is_a_mask_error(garbage):
    with pytest.raises(MaskError):
        rle_to_mask(garbage, 7, 5)
