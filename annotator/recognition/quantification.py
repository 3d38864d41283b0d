"""COVID-19 detection and infection quantification from a lung mask and an infection map. Pure numpy.

The infected region is the infection mask AND the post-processed lung mask. An image is COVID-19
positive when at least one lung pixel is infected (p > 0.5); its probability is the highest infection
probability inside the lungs, so ``detected`` is exactly ``probability > 0.5``. The infected share is
counted over both lungs and per lung, the lungs being the two largest lung components, named as a
radiologist reads them: by the *patient's* side. CXRs are read as posteroanterior (PA) or AP views shown
in the standard orientation, where the patient's right lung lies on the image's left. The severity grade
follows the share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from annotator.errors import MaskError

DETECTION_THRESHOLD = 0.5
# (upper bound of the share, grade): the share of the lungs that is infected.
SEVERITY_GRADES: tuple[tuple[float, str], ...] = (
    (0.0, "none"),
    (0.25, "mild"),
    (0.50, "moderate"),
    (0.75, "severe"),
    (1.0, "critical"),
)


def severity_grade(share: float) -> str:
    """none (0), mild (<= 25%), moderate (<= 50%), severe (<= 75%), critical (> 75%)."""
    if share <= 0:
        return "none"
    for bound, grade in SEVERITY_GRADES[1:]:
        if share <= bound:
            return grade
    return SEVERITY_GRADES[-1][1]


def split_lungs(lung_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lungs of a mask as (patient_right, patient_left) bool masks (standard PA orientation).

    With two or more components, the two largest are the lungs, the one further to the image's left
    being the patient's right lung. With one component only (both lungs merged, or one lung not found)
    the image's vertical midline decides: the part left of it is the patient's right lung, the part
    right of it the patient's left. A single lung that lies on one side is that lung, and the other
    lung is empty: it is not cut in two.
    """
    binary = (np.asarray(lung_mask) > 0).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        empty = np.zeros(binary.shape, dtype=bool)
        return empty, empty.copy()
    order = np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1] + 1
    if len(order) == 1:
        comp = labels == order[0]
        image_left = np.arange(binary.shape[1])[None, :] < binary.shape[1] / 2
        return comp & image_left, comp & ~image_left
    a, b = order[0], order[1]
    first, second = labels == a, labels == b
    return (first, second) if centroids[a][0] <= centroids[b][0] else (second, first)


@dataclass(frozen=True)
class Quantification:
    covid_positive: bool
    covid_probability: float  # the highest infection probability inside the lungs
    infected_share: float  # of both lungs, 0..1
    infected_share_right: float  # of the patient's right lung
    infected_share_left: float  # of the patient's left lung
    severity: str
    lung_pixels: int
    infected_pixels: int
    lung_pixels_right: int
    lung_pixels_left: int

    def to_dict(self) -> dict:
        return asdict(self)


def infected_mask(lung_mask: np.ndarray, infection: np.ndarray, threshold: float = DETECTION_THRESHOLD) -> np.ndarray:
    """Infection (probability > threshold, or a {0,255} mask) AND lungs, as a {0,255} uint8 mask."""
    lung = np.asarray(lung_mask) > 0
    infection = np.asarray(infection)
    if infection.shape != lung.shape:
        raise MaskError(f"infection map is {infection.shape} but the lung mask is {lung.shape}")
    if infection.dtype == np.uint8:
        inf = infection > 127 if infection.max(initial=0) > 1 else infection > 0
    else:
        inf = infection > threshold
    return np.where(inf & lung, 255, 0).astype(np.uint8)


def _share(part: np.ndarray, whole: np.ndarray) -> float:
    total = int(np.count_nonzero(whole))
    return float(np.count_nonzero(part & whole)) / total if total else 0.0


def _max_probability(infection: np.ndarray, lung: np.ndarray) -> float:
    values = np.asarray(infection)[lung]
    if values.size == 0:
        return 0.0
    top = float(values.max())
    if np.asarray(infection).dtype == np.uint8:  # a {0,1} or {0,255} mask: certain where drawn
        return 1.0 if top > (127 if np.asarray(infection).max(initial=0) > 1 else 0) else 0.0
    return top


def quantify(lung_mask: np.ndarray, infection: np.ndarray, threshold: float = DETECTION_THRESHOLD) -> Quantification:
    """Detection, the infected share overall and per lung (patient's sides), and the severity grade."""
    infected = infected_mask(lung_mask, infection, threshold) > 0
    lung = np.asarray(lung_mask) > 0
    right, left = split_lungs(lung_mask)
    share = _share(infected, lung)
    return Quantification(
        covid_positive=bool(infected.any()),
        covid_probability=_max_probability(infection, lung),
        infected_share=share,
        infected_share_right=_share(infected, right),
        infected_share_left=_share(infected, left),
        severity=severity_grade(share),
        lung_pixels=int(lung.sum()),
        infected_pixels=int(infected.sum()),
        lung_pixels_right=int(right.sum()),
        lung_pixels_left=int(left.sum()),
    )
