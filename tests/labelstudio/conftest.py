"""Real sample masks for the Label Studio adapter's tests (no server needed here)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from annotator.imaging.io import read_image, read_mask


def lung_rows(sample_data: Path, n: int) -> list[dict]:
    with (sample_data / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["has_lung_mask"] == "1" and r["lung_mask_origin"].startswith("manual")]
    return rows[:n]


@pytest.fixture(scope="session")
def real_pairs(sample_data) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """Three real images (path, pixels, manual lung mask), one of them not square."""
    rows = lung_rows(sample_data, 2)
    with (sample_data / "manifest.csv").open(newline="") as fh:
        odd = [r for r in csv.DictReader(fh) if r["has_lung_mask"] == "1" and r["width"] != r["height"]][:1]
    return [(sample_data / r["file"], read_image(sample_data / r["file"]), read_mask(sample_data / r["lung_mask_file"]))
            for r in rows + odd]
