"""Infection segmentation with the segmentation engine, in two configurations (the thesis' Table 6):

- ``parallel`` (default): the plain CXR goes to both the lung and the infection network;
- ``cascaded``: the segmented lungs (CXR with everything outside the lung mask set to 0) go to the
  infection network.

This module only shapes the infection network's input; the networks come from
``annotator.segmentation`` (trained by ``recognition.pipeline``, loaded by ``recognition.predict``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annotator.errors import MaskError, UnknownNameError
from annotator.recognition.config import INFECTION_CONFIGURATIONS
from annotator.recognition.preprocessing import apply_lung_mask


def check_configuration(configuration: str) -> str:
    if configuration not in INFECTION_CONFIGURATIONS:
        raise UnknownNameError("infection configuration", configuration, INFECTION_CONFIGURATIONS)
    return configuration


def infection_input(image: np.ndarray, lung_mask: np.ndarray | None, configuration: str) -> np.ndarray:
    """What the infection network sees for one CXR."""
    if check_configuration(configuration) == "parallel":
        return image
    if lung_mask is None:
        raise MaskError("the cascaded configuration needs the lung mask of every image")
    return apply_lung_mask(image, lung_mask)


def infection_inputs(images: Sequence[np.ndarray], lung_masks: Sequence[np.ndarray | None] | None, configuration: str) -> list[np.ndarray]:
    masks = list(lung_masks) if lung_masks is not None else [None] * len(images)
    return [infection_input(i, m, configuration) for i, m in zip(images, masks, strict=True)]


def training_pairs(
    images: Sequence[np.ndarray], lung_masks: Sequence[np.ndarray | None], infection_masks: Sequence[np.ndarray], configuration: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, infection mask) pairs for the engine's ``train_model``; the cascaded input uses the given
    (reference) lung masks."""
    pairs = []
    for image, lung, infection in zip(images, lung_masks, infection_masks, strict=True):
        pairs.append((infection_input(image, lung, configuration), infection))
    return pairs
