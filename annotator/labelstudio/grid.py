"""The best-of-six task image: six mask overlays of one CXR in a 2x3 grid, labelled m1..m6.

Label Studio's labelling stream shows one prediction per task, so the six candidates are pre-rendered
into one PNG under ``<store>/overlays/`` (served by the project's second local-storage entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from annotator.config import Settings
from annotator.errors import MaskError
from annotator.imaging.io import write_png
from annotator.imaging.overlay import overlay_fill

LABELS = ("m1", "m2", "m3", "m4", "m5", "m6")
OVERLAY_DIR = "overlays"
GAP_PX = 4


def overlay_dir(settings: Settings) -> Path:
    return settings.store_path / OVERLAY_DIR


def render_best_of_six(gray: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """An RGB grid (2 rows x 3 columns) of the CXR with each candidate mask filled, m1..m6 in reading order."""
    if len(masks) != len(LABELS):
        raise MaskError(f"best-of-six needs {len(LABELS)} masks, got {len(masks)}")
    h, w = gray.shape
    tiles = []
    for label, mask in zip(LABELS, masks):
        if mask.shape != gray.shape:
            raise MaskError(f"candidate {label} is {mask.shape[1]}x{mask.shape[0]}, the image is {w}x{h}")
        tile = overlay_fill(gray, mask)
        scale = max(0.4, h / 400)
        cv2.putText(tile, label, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0),
                    max(1, int(2 * scale)), cv2.LINE_AA)
        tiles.append(tile)
    grid = np.full((2 * h + GAP_PX, 3 * w + 2 * GAP_PX, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, 3)
        grid[r * (h + GAP_PX) : r * (h + GAP_PX) + h, c * (w + GAP_PX) : c * (w + GAP_PX) + w] = tile
    return grid


def write_best_of_six(settings: Settings, image_id: int, round_id: int | None, gray: np.ndarray,
                      masks: Sequence[np.ndarray]) -> Path:
    """Render and write the grid PNG for a task; returns its path (give it to ``TaskIn.image_path``)."""
    path = overlay_dir(settings) / f"best_of_six-r{'-' if round_id is None else round_id}-{image_id}.png"
    write_png(path, render_best_of_six(gray, masks))
    return path
