"""The thesis' post-processing (3.2.2.2): threshold at 0.5, fill holes, drop connected regions smaller than
5% of the predicted positive pixels. OpenCV and SciPy do the work; no torch."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def to_binary(prob_or_mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """A probability map (float in 0..1) or a mask (bool, {0,1} or {0,255}) -> HxW bool."""
    arr = np.asarray(prob_or_mask)
    if arr.ndim != 2:
        raise ValueError(f"expected an HxW array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        top = 255 if arr.max(initial=0) > 1 else 1
        return arr.astype(np.float32) / top > threshold
    return arr > threshold


def postprocess(prob_or_mask: np.ndarray, threshold: float = 0.5, min_region_share: float = 0.05) -> np.ndarray:
    """HxW uint8 {0,255}: thresholded, holes filled, regions under ``min_region_share`` of all positive
    pixels removed (8-connectivity)."""
    binary = ndimage.binary_fill_holes(to_binary(prob_or_mask, threshold))
    total = int(np.count_nonzero(binary))
    if total == 0:
        return np.zeros(binary.shape, np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_region_share * total
    return np.where(keep[labels], 255, 0).astype(np.uint8)


def mean_entropy(prob: np.ndarray) -> float:
    """Mean binary entropy (bits) of a probability map: high where the network hesitates (the uncertainty
    a round's ``uncertainty`` strategy ranks by)."""
    p = np.clip(prob.astype(np.float64), 1e-6, 1 - 1e-6)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))
