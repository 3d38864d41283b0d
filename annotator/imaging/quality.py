"""Quality attributes used to stratify rounds: resolution bin, RMS contrast, an SNR estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# upper bounds of the longest side, in pixels
RESOLUTION_BINS: tuple[tuple[str, int], ...] = (("xs", 256), ("s", 512), ("m", 1024), ("l", 2048), ("xl", 1 << 30))
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


@dataclass(frozen=True)
class Quality:
    resolution_bin: str
    contrast: float  # RMS contrast: std of the intensities in 0..1
    snr_db: float  # 20 log10(mean intensity / estimated noise sigma)


def resolution_bin(width: int, height: int) -> str:
    side = max(width, height)
    for name, upper in RESOLUTION_BINS:
        if side <= upper:
            return name
    return RESOLUTION_BINS[-1][0]  # pragma: no cover - the last bound is effectively infinite


def noise_sigma(gray: np.ndarray, strip_rows: int = 256) -> float:
    """Immerkaer's (1996) fast noise estimate: the Laplacian-difference kernel cancels structure.

    Computed in strips of rows (each with a row of context on either side), so a large image never needs a
    float64 copy of itself; every inner pixel's response is the same as on the whole image.
    """
    h, w = gray.shape
    if h < 3 or w < 3:
        return 0.0
    total = 0.0
    for top in range(1, h - 1, strip_rows):
        bottom = min(top + strip_rows, h - 1)
        strip = gray[top - 1:bottom + 1].astype(np.float64)
        response = cv2.filter2D(strip, -1, _IMMERKAER, borderType=cv2.BORDER_CONSTANT)[1:-1, 1:-1]
        total += float(np.abs(response).sum())
    return math.sqrt(math.pi / 2.0) * total / (6.0 * (w - 2) * (h - 2))


def measure_quality(gray: np.ndarray) -> Quality:
    """Quality attributes of an 8-bit grayscale image (mean and spread in one pass, without a float copy)."""
    h, w = gray.shape
    mean_px, std_px = cv2.meanStdDev(np.ascontiguousarray(gray))
    mean, contrast = float(mean_px[0, 0]) / 255.0, float(std_px[0, 0]) / 255.0
    sigma = noise_sigma(gray) / 255.0
    snr = 20.0 * math.log10(mean / sigma) if sigma > 0 and mean > 0 else 99.0
    return Quality(resolution_bin(w, h), contrast, round(snr, 3))
