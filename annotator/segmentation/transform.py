"""Array transforms shared by training and prediction (numpy + OpenCV; no torch).

An image goes to the network resized to the spec's square input and standardised per image (zero mean,
unit variance), which keeps collections of different contrast comparable.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_IMAGE_PX = 32


def resize_image(image: np.ndarray, size_px: int) -> np.ndarray:
    """HxW uint8 -> size x size uint8 (area when shrinking, linear when enlarging)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size_px <= min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size_px, size_px), interpolation=interp)


def resize_mask(mask: np.ndarray, size_px: int) -> np.ndarray:
    """{0,255} mask -> size x size {0,1} uint8 (area average, then majority)."""
    small = cv2.resize((mask > 0).astype(np.float32), (size_px, size_px), interpolation=cv2.INTER_AREA)
    return (small >= 0.5).astype(np.uint8)


def standardize(images: np.ndarray) -> np.ndarray:
    """N x H x W uint8 (or float) -> float32, each image to zero mean and unit variance."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(-2, -1), keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    return (x - mean) / np.maximum(std, 1.0)


def resize_probability(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A network-sized probability map back to the image's own (h, w)."""
    h, w = shape
    return cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def random_affine(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, rotation_deg: float,
                  translate: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate up to +/-rotation_deg and shift up to +/-translate of the side (the thesis' augmentation)."""
    h, w = image.shape
    angle = rng.uniform(-rotation_deg, rotation_deg) if rotation_deg else 0.0
    tx = rng.uniform(-translate, translate) * w if translate else 0.0
    ty = rng.uniform(-translate, translate) * h if translate else 0.0
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += (tx, ty)
    out_image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out_mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return out_image, out_mask
