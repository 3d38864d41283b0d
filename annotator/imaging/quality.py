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


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkaer's (1996) fast noise estimate: the Laplacian-difference kernel cancels structure."""
    h, w = gray.shape
    if h < 3 or w < 3:
        return 0.0
    response = cv2.filter2D(gray.astype(np.float64), -1, _IMMERKAER, borderType=cv2.BORDER_CONSTANT)[1:-1, 1:-1]
    return math.sqrt(math.pi / 2.0) * float(np.abs(response).sum()) / (6.0 * (w - 2) * (h - 2))


def measure_quality(gray: np.ndarray) -> Quality:
    """Quality attributes of an 8-bit grayscale image."""
    h, w = gray.shape
    pixels = gray.astype(np.float64) / 255.0
    sigma = noise_sigma(gray) / 255.0
    mean = float(pixels.mean())
    snr = 20.0 * math.log10(mean / sigma) if sigma > 0 and mean > 0 else 99.0
    return Quality(resolution_bin(w, h), float(pixels.std()), round(snr, 3))
