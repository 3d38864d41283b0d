"""Quality attributes (resolution bin, contrast, SNR) and overlay PNGs, on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotator.imaging.io import read_image
from annotator.imaging.overlay import COLOURS, overlay_contours, overlay_fill, write_overlay
from annotator.imaging.quality import measure_quality, noise_sigma, resolution_bin


@pytest.mark.parametrize(("w", "h", "expected"), [(256, 200, "xs"), (257, 10, "s"), (512, 512, "s"),
                                                  (300, 1024, "m"), (2048, 1, "l"), (3000, 2500, "xl")])
def test_resolution_bins(w, h, expected):
    assert resolution_bin(w, h) == expected


def test_constant_image_has_no_noise_and_no_contrast():
    flat = np.full((32, 32), 100, np.uint8)
    q = measure_quality(flat)
    assert noise_sigma(flat) == 0.0
    assert (q.resolution_bin, q.snr_db) == ("xs", 99.0)
    assert q.contrast == pytest.approx(0.0, abs=1e-12)


def test_noise_estimate_recovers_known_sigma():
    rng = np.random.default_rng(1)
    noisy = np.clip(128 + rng.normal(0, 10, (256, 256)), 0, 255).astype(np.uint8)
    assert noise_sigma(noisy) == pytest.approx(10.0, rel=0.05)
    q = measure_quality(noisy)
    assert q.contrast == pytest.approx(10 / 255, rel=0.05)
    assert q.snr_db == pytest.approx(20 * math.log10(128 / 10), abs=0.5)


def test_two_level_contrast_is_half_the_step():
    img = np.zeros((10, 10), np.uint8)
    img[:, 5:] = 255
    assert measure_quality(img).contrast == pytest.approx(0.5)


def test_overlay_draws_the_contour_only(tmp_path):
    gray = np.full((12, 12), 90, np.uint8)
    mask = np.zeros((12, 12), np.uint8)
    mask[3:9, 3:9] = 255
    rgb = overlay_contours(gray, {"lung": mask})
    assert rgb.shape == (12, 12, 3)
    assert tuple(rgb[3, 5]) == COLOURS["lung"]  # the border
    assert tuple(rgb[5, 5]) == (90, 90, 90) and tuple(rgb[0, 0]) == (90, 90, 90)  # inside, outside
    path = write_overlay(tmp_path / "o" / "overlay.png", gray, {"lung": mask})
    assert path.is_file()
    # saved as RGB: its luma at the border is the green's
    assert read_image(path)[3, 5] == round(0.587 * 220)


def test_overlay_fill_blends_inside():
    gray = np.zeros((8, 8), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    out = overlay_fill(gray, mask, colour=(0, 200, 0), alpha=0.5)
    assert tuple(out[3, 3]) == (0, 100, 0) and tuple(out[0, 0]) == (0, 0, 0)


def test_overlay_rejects_a_mask_of_another_size():
    with pytest.raises(ValueError, match="mask 'lung'"):
        overlay_contours(np.zeros((4, 4), np.uint8), {"lung": np.zeros((5, 4), np.uint8)})
