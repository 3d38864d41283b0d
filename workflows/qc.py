"""Anatomical quality check of a predicted lung mask: two lungs, a plausible area share, no fragments.

The flag is shown in the RA's task; it never changes a decision by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

MIN_AREA_SHARE = 0.08  # of the image
MAX_AREA_SHARE = 0.65
FRAGMENT_SHARE = 0.05  # a component under 5% of the mask is a fragment


@dataclass(frozen=True)
class QCResult:
    ok: bool
    lungs: int
    area_share: float
    fragments: int
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        return "QC ok" if self.ok else "QC: " + "; ".join(self.flags)


def check_lung_mask(mask: np.ndarray) -> QCResult:
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    total = int(binary.sum())
    share = total / binary.size if binary.size else 0.0
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = sorted((int(a) for a in stats[1:, cv2.CC_STAT_AREA]), reverse=True)
    big = [a for a in areas if total and a >= FRAGMENT_SHARE * total]
    fragments = len(areas) - len(big)
    flags = []
    if total == 0:
        flags.append("empty mask")
    else:
        if len(big) != 2:
            flags.append(f"{len(big)} lung region(s), expected 2")
        if share < MIN_AREA_SHARE:
            flags.append(f"lungs cover {share:.0%} of the image (< {MIN_AREA_SHARE:.0%})")
        if share > MAX_AREA_SHARE:
            flags.append(f"lungs cover {share:.0%} of the image (> {MAX_AREA_SHARE:.0%})")
        if fragments:
            flags.append(f"{fragments} fragment(s)")
    return QCResult(ok=not flags, lungs=len(big), area_share=round(share, 4), fragments=fragments, flags=tuple(flags))
