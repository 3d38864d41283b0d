"""What a Label Studio task of ours is: our key (``<queue>:<round_id>:<image_id>``), its data, and its
inline prediction as a brush region (RLE). The client imports them; the ML backend and the simulated
people answer with the same brush regions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.errors import LabelStudioError, MaskError
from annotator.imaging.io import read_image
from annotator.imaging.rle import mask_to_rle
from annotator.labelstudio.queue import BRUSH_TAG, IMAGE_TAG, LUNG_LABEL, get_queue


@dataclass(frozen=True)
class TaskIn:
    """One task to push: an image of the store, optionally its prediction (a {0,255} mask) and extra data."""

    image_id: int
    queue: str
    image_path: Path  # absolute, inside settings.store_path (served through local files)
    round_id: int | None = None
    prediction_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    model_version: str | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"advice": "..."} for ra_adjust

    @property
    def key(self) -> str:
        return task_key(self.queue, self.round_id, self.image_id)


def task_key(queue: str, round_id: int | None, image_id: int) -> str:
    return f"{queue}:{'-' if round_id is None else round_id}:{image_id}"


def brush_result(mask: np.ndarray, *, result_id: str | None = None) -> dict:
    """A Label Studio brush region (RLE) of a {0,255} mask, at the mask's own size."""
    height, width = mask.shape[:2]
    return {
        "id": result_id or uuid.uuid4().hex[:10],
        "from_name": BRUSH_TAG,
        "to_name": IMAGE_TAG,
        "type": "brushlabels",
        "origin": "prediction",
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [LUNG_LABEL]},
    }


def prediction_payload(mask: np.ndarray, model_version: str, score: float | None = None) -> dict:
    return {"model_version": model_version, "score": float(score if score is not None else 1.0),
            "result": [brush_result(mask)]}


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    pixels = read_image(path)
    return int(pixels.shape[0]), int(pixels.shape[1])


def task_payload(task: TaskIn, size: tuple[int, int], image_url: str) -> dict:
    """The task as Label Studio imports it: its data (image URL, our key, the queue's fields) and, when it
    has one, the prediction as a brush region of the image's size."""
    spec = get_queue(task.queue)
    missing = [f for f in spec.data_fields if f not in task.extra]
    if missing:
        raise LabelStudioError(f"task {task.key}: queue {spec.name} needs data fields {missing}")
    height, width = size
    data = {
        IMAGE_TAG: image_url,
        "annotator_key": task.key,
        "image_id": task.image_id,
        "round_id": task.round_id,
        "queue": task.queue,
        "width": width,
        "height": height,
        **task.extra,
    }
    payload: dict[str, Any] = {"data": data}
    if task.prediction_mask is not None:
        if not spec.has_brush:
            raise LabelStudioError(f"task {task.key}: queue {spec.name} shows no brush mask; send no prediction")
        if not task.model_version:
            raise LabelStudioError(f"task {task.key}: a prediction needs its model_version")
        mask = np.asarray(task.prediction_mask)
        if mask.shape[:2] != (height, width):
            raise MaskError(
                f"task {task.key}: prediction is {mask.shape[1]}x{mask.shape[0]} but image "
                f"{task.image_path} is {width}x{height}"
            )
        payload["predictions"] = [prediction_payload(mask, task.model_version, task.score)]
    return payload
