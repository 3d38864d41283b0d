"""Class balancing by augmentation (the thesis): minority classes are topped up to the largest class with
rotated (5, 10, 20, 25 degrees, either sign) and translated (up to +/-10%) copies. Pure numpy/OpenCV.

``balance_plan`` decides *which* copies exist (deterministic for a seed); ``augment`` makes one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

ROTATIONS_DEG = (5, 10, 20, 25)
MAX_SHIFT = 0.10


@dataclass(frozen=True)
class Augmentation:
    """One copy: rotate by ``angle_deg`` (counter-clockwise), then shift by a share of width/height."""

    angle_deg: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.angle_deg == 0 and self.shift_x == 0 and self.shift_y == 0


IDENTITY = Augmentation()


def augment(image: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Apply one augmentation to an HxW or HxWxC array (borders filled with 0)."""
    if aug.is_identity:
        return image
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), aug.angle_deg, 1.0)
    matrix[0, 2] += aug.shift_x * w
    matrix[1, 2] += aug.shift_y * h
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(image.shape)


def random_augmentation(rng: np.random.Generator) -> Augmentation:
    angle = float(rng.choice(ROTATIONS_DEG)) * float(rng.choice((-1, 1)))
    sx, sy = (float(v) for v in rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2))
    return Augmentation(angle, sx, sy)


def balance_plan(labels: Sequence[int], seed: int = 0, cap: int | None = None) -> list[tuple[int, Augmentation]]:
    """(index, augmentation) pairs: every original once, plus augmented copies of each minority class
    until it matches the largest class (or ``cap``, when given and smaller). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    counts = Counter(int(v) for v in labels)
    target = max(counts.values()) if counts else 0
    if cap is not None:
        target = min(target, cap)
    plan = [(i, IDENTITY) for i in range(len(labels))]
    for cls, count in sorted(counts.items()):
        members = [i for i, v in enumerate(labels) if int(v) == cls]
        for k in range(max(0, target - count)):
            plan.append((members[k % count], random_augmentation(rng)))
    return plan
