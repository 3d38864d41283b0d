"""Real sample images and a tiny trained network, shared by the segmentation tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from annotator.imaging.io import read_image, read_mask

SEED_DATASETS = ("Montgomery", "Shenzhen")


def manifest_rows(sample_data: Path, datasets=SEED_DATASETS, with_lung_mask: bool = True) -> list[dict]:
    with (sample_data / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] in datasets]
    return [r for r in rows if not with_lung_mask or r["has_lung_mask"] == "1"]


def load_pairs(sample_data: Path, rows: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(read_image(sample_data / r["file"]), read_mask(sample_data / r["lung_mask_file"])) for r in rows]


@pytest.fixture(scope="session")
def seed_pairs(sample_data) -> list[tuple[np.ndarray, np.ndarray]]:
    """Six real Montgomery/Shenzhen images with their manual lung masks (three of each set)."""
    rows = manifest_rows(sample_data, ("Montgomery",))[:3] + manifest_rows(sample_data, ("Shenzhen",))[:3]
    return load_pairs(sample_data, rows)


@pytest.fixture(scope="session")
def odd_images(sample_data) -> list[np.ndarray]:
    """Real images that are not square (ieee8023 / Kermany keep their aspect ratio)."""
    with (sample_data / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["width"] != r["height"]][:3]
    assert len(rows) == 3
    return [read_image(sample_data / r["file"]) for r in rows]


@pytest.fixture(scope="session")
def tiny_run(seed_pairs, tmp_path_factory):
    """A tiny U-Net-ResNet18 (64 px) trained on two real images: (TrainResult, out_dir)."""
    from annotator.segmentation.registry import get_spec
    from annotator.segmentation.presets import PRESETS
    from annotator.segmentation.train import train_model

    out_dir = tmp_path_factory.mktemp("tiny-run")
    result = train_model(get_spec("unet-resnet18"), PRESETS["tiny"], seed_pairs[:2], seed_pairs[:2], out_dir,
                         progress=False)
    return result, out_dir


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """One thread on a busy (shared) machine, where two spin at OpenMP barriers (see runtime.py)."""
    from annotator.segmentation.runtime import configure_threads

    configure_threads(0)
