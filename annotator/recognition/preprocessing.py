"""Preprocessing schemes of the classifier's input (the thesis' Table 4): original, CLAHE, complement and
the 3-channel stack of the three; and the lung-segmented input. Pure numpy/OpenCV.

Every scheme turns an HxW uint8 CXR into an ``size x size x 3`` float32 array in 0..1 (single-channel
schemes repeat their channel), which is what the ImageNet-shaped networks take.
"""

from __future__ import annotations

import cv2
import numpy as np

from annotator.errors import UnknownNameError

CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 8)
INPUT_MODES = ("plain", "segmented")


def clahe(image: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV, clip 2.0, 8x8 tiles)."""
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES).apply(np.ascontiguousarray(image))


def complement(image: np.ndarray) -> np.ndarray:
    """The negative image: 255 - x."""
    return (255 - image.astype(np.int16)).astype(np.uint8)


def _channels(image: np.ndarray, scheme: str) -> list[np.ndarray]:
    if scheme == "original":
        return [image] * 3
    if scheme == "clahe":
        return [clahe(image)] * 3
    if scheme == "complement":
        return [complement(image)] * 3
    return [image, clahe(image), complement(image)]  # stack


SCHEMES: dict[str, str] = {
    "original": "the CXR as it is",
    "clahe": "CLAHE-enhanced CXR",
    "complement": "complement (negative) of the CXR",
    "stack": "3 channels: original, CLAHE, complement",
}


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise UnknownNameError("preprocessing scheme", scheme, SCHEMES)
    return scheme


def check_input_mode(mode: str) -> str:
    if mode not in INPUT_MODES:
        raise UnknownNameError("classifier input", mode, INPUT_MODES)
    return mode


def apply_lung_mask(image: np.ndarray, lung_mask: np.ndarray) -> np.ndarray:
    """The segmented lungs: pixels outside the lung mask set to 0 (same size as the image)."""
    if lung_mask.shape != image.shape:
        lung_mask = cv2.resize(lung_mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(lung_mask > 0, image, 0).astype(np.uint8)


def resize_square(image: np.ndarray, size_px: int) -> np.ndarray:
    """Resize to size x size (the sample images are already near-square; the thesis resized likewise)."""
    interp = cv2.INTER_AREA if max(image.shape) > size_px else cv2.INTER_LINEAR
    return cv2.resize(image, (size_px, size_px), interpolation=interp)


def prepare(image: np.ndarray, scheme: str, size_px: int, lung_mask: np.ndarray | None = None) -> np.ndarray:
    """An HxW uint8 CXR -> size x size x 3 float32 in 0..1 for the given scheme (and lung mask, if any)."""
    check_scheme(scheme)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    if lung_mask is not None:
        image = apply_lung_mask(image, lung_mask)
    small = resize_square(image, size_px)
    return np.stack(_channels(small, scheme), axis=-1).astype(np.float32) / 255.0

