"""Overlay PNGs: mask contours drawn on the CXR, for people to look at."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from annotator.imaging.io import write_png

COLOURS = {"lung": (0, 220, 0), "infection": (255, 40, 40), "truth": (40, 120, 255)}


def overlay_contours(gray: np.ndarray, masks: dict[str, np.ndarray], thickness: int = 1) -> np.ndarray:
    """An RGB image: the CXR with each named mask's contour in its colour (COLOURS, else yellow)."""
    rgb = np.repeat(gray[:, :, None], 3, axis=2).copy()
    for name, mask in masks.items():
        if mask.shape != gray.shape:
            raise ValueError(f"mask {name!r} is {mask.shape}, image is {gray.shape}")
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, COLOURS.get(name, (255, 220, 0)), thickness)
    return rgb


def overlay_fill(gray: np.ndarray, mask: np.ndarray, colour=(0, 220, 0), alpha: float = 0.35) -> np.ndarray:
    """An RGB image with the mask filled semi-transparently and outlined."""
    rgb = np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32)
    sel = mask > 0
    rgb[sel] = (1 - alpha) * rgb[sel] + alpha * np.array(colour, np.float32)
    out = rgb.clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(sel.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, colour, 1)
    return out


def write_overlay(path: Path | str, gray: np.ndarray, masks: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    write_png(path, overlay_contours(gray, masks))
    return path
