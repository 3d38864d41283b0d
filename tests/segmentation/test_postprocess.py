"""Post-processing (thesis 3.2.2.2): threshold, hole filling, removal of regions < 5% of the positives."""

from __future__ import annotations

import hashlib

import numpy as np

from annotator.imaging.io import read_mask
from annotator.segmentation.postprocess import postprocess

# the post-processed noisy mask below: 730 noisy pixels, 11 left (speckles touching the lung border)
GOLDEN_SHA256 = "cf5dfdcbb089681c5e83c1b681069a58ad8cf79d3667c04c0af528cb99c784c8"
GOLDEN_POSITIVE = 15925


def _noisy(mask: np.ndarray) -> np.ndarray:
    """A real lung mask made noisy the way a network's output is: speckles, holes, a stray blob."""
    rng = np.random.default_rng(7)
    noisy = mask.copy()
    h, w = mask.shape
    flips = rng.random(mask.shape) < 0.01
    noisy[flips & (mask == 0)] = 255  # isolated false positives outside the lungs
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    for dy, dx in ((0, -40), (10, 40), (-20, -45)):
        y, x = cy + dy, cx + dx
        noisy[y - 3:y + 4, x - 3:x + 4] = 0  # holes inside the lungs
    noisy[5:15, 5:15] = 255  # a 100-pixel blob in a corner
    return noisy


def test_noisy_real_mask_equals_stored_result(sample_data):
    truth = read_mask(sample_data / "masks/lung/MCUCXR_0001_0.png")
    noisy = _noisy(truth)
    cleaned = postprocess(noisy)
    assert cleaned.dtype == np.uint8 and set(np.unique(cleaned)) <= {0, 255}
    assert hashlib.sha256(cleaned.tobytes()).hexdigest() == GOLDEN_SHA256
    assert int(np.count_nonzero(cleaned)) == GOLDEN_POSITIVE
    assert cleaned[5:15, 5:15].max() == 0  # the corner blob is gone
    # what is left is the two lungs with their holes filled: equal to the truth but its own holes/notches
    assert np.count_nonzero(cleaned != truth) == 11  # of 730 changed by the noise


def test_threshold_hole_fill_and_small_regions_by_hand():
    prob = np.zeros((40, 40), np.float32)
    prob[5:25, 5:25] = 0.9  # 400 px region with a hole
    prob[12:15, 12:15] = 0.2  # the hole (9 px)
    prob[30:33, 30:33] = 0.8  # 9 px: under 5% of ~409, removed
    prob[30:35, 2:6] = 0.5  # exactly 0.5 is not lung
    out = postprocess(prob)
    expected = np.zeros((40, 40), np.uint8)
    expected[5:25, 5:25] = 255
    assert np.array_equal(out, expected)


def test_region_at_the_share_limit_is_kept_and_masks_in_all_forms():
    mask = np.zeros((50, 50), np.uint8)
    mask[0:19, 0:20] = 1  # 380 px
    mask[40:44, 40:45] = 1  # 20 px = 5% of 400 -> kept
    assert np.count_nonzero(postprocess(mask)) == 400
    assert np.array_equal(postprocess(mask.astype(bool)), postprocess(mask * 255))
    assert np.count_nonzero(postprocess(mask, min_region_share=0.06)) == 380
    assert postprocess(np.zeros((8, 8), np.float32)).max() == 0
