"""A trained pipeline scored on a collection it was not trained on (`annotator evaluate-pipeline`).

The collection is read in place through an import layout (nothing is copied into a workspace) and the
pipeline runs on it in batches, keeping only per-image scores, so memory stays flat with its size:
- lung DSC on every image with a lung mask;
- infection DSC on every image with an infection mask, an empty mask meaning "no infection" (an empty
  prediction there scores 1, any infected pixel 0);
- COVID-19 detection (any infected lung pixel) against the class: covid positive, every other class
  negative, images without a class left out;
- per classification scheme, the accuracy on the images whose class the classifier knows (in the 3-class
  scheme SARS, MERS and tuberculosis count as non-COVID pneumonia, as the pipeline trains it).
Each figure comes with its n and its 95% radius (eq. 8). Files that cannot be read are listed, not fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from annotator.errors import AnnotatorError
from annotator.evaluation.metrics import confidence_radius, dice
from annotator.imaging.io import read_image, read_mask
from annotator.ingest.layouts import ImportItem, ItemProblem
from annotator.recognition.config import CLASS_SCHEMES, scheme_class
from annotator.recognition.quantification import DETECTION_THRESHOLD, infected_mask, quantify

log = logging.getLogger(__name__)

COVID = "covid"
BATCH_SIZE = 16


@dataclass
class _Tally:
    lung_dsc: list[float] = field(default_factory=list)
    infection_dsc: list[float] = field(default_factory=list)
    detection: list[tuple[bool, bool]] = field(default_factory=list)  # (truth, predicted)
    correct: dict[str, list[bool]] = field(default_factory=dict)  # scheme -> right or wrong per image
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Loaded:
    name: str
    cls: str | None
    image: np.ndarray
    lung_mask: np.ndarray | None
    infection_mask: np.ndarray | None


def _load(item: ImportItem) -> _Loaded:
    image = read_image(item.image_path)
    shape = image.shape[:2]
    lung = None
    if item.lung_mask_path is not None:
        lung = read_mask(item.lung_mask_path, shape)
    elif item.lung_mask_parts:
        lung = np.maximum.reduce([read_mask(p, shape) for p in item.lung_mask_parts])
    infection = read_mask(item.infection_mask_path, shape) if item.infection_mask_path is not None else None
    return _Loaded(item.name, item.cls, image, lung, infection)


def _mean_with_radius(values: list[float], key: str) -> dict:
    n = len(values)
    if n == 0:
        return {key: None, f"{key}_ci": None, "n": 0}
    mean = float(np.mean(values))
    return {key: mean, f"{key}_ci": confidence_radius(mean, n), "n": n}


def _share(hits: int, total: int) -> tuple[float | None, float | None]:
    if total == 0:
        return None, None
    value = hits / total
    return value, confidence_radius(value, total)


def _score_batch(predictor, batch: list[_Loaded], tally: _Tally) -> None:
    images = [b.image for b in batch]
    lungs, probs = predictor.segment(images)
    for b, lung, prob in zip(batch, lungs, probs, strict=True):
        if b.lung_mask is not None:
            tally.lung_dsc.append(dice(lung, b.lung_mask))
        if b.infection_mask is not None:
            tally.infection_dsc.append(dice(infected_mask(lung, prob, DETECTION_THRESHOLD), b.infection_mask))
        if b.cls is not None:
            tally.detection.append((b.cls == COVID, quantify(lung, prob, DETECTION_THRESHOLD).covid_positive))
    for scheme, clf in predictor.classifiers.items():
        truth = [_scheme_label(scheme, clf.class_names, b.cls) for b in batch]
        known = [(b, lung, t) for b, lung, t in zip(batch, lungs, truth, strict=True) if t is not None]
        if not known:
            continue
        proba = clf.predict_proba([b.image for b, _, _ in known], [lung for _, lung, _ in known])
        right = [clf.class_names[int(np.argmax(p))] == t for (_, _, t), p in zip(known, proba, strict=True)]
        tally.correct.setdefault(scheme, []).extend(right)


def _scheme_label(scheme: str, class_names: list[str], cls: str | None) -> str | None:
    """The classifier's class an image's own class counts as (SARS as non-COVID pneumonia in the 3-class
    scheme, as the pipeline trained it), or None when the classifier cannot know it."""
    if scheme in CLASS_SCHEMES:
        return scheme_class(scheme, cls)
    return cls if cls in class_names else None


def _summary(tally: _Tally, images: int) -> dict:
    truth = [t for t, _ in tally.detection]
    tp = sum(1 for t, p in tally.detection if t and p)
    tn = sum(1 for t, p in tally.detection if not t and not p)
    positives, negatives = sum(truth), len(truth) - sum(truth)
    sensitivity, sensitivity_ci = _share(tp, positives)
    specificity, specificity_ci = _share(tn, negatives)
    accuracy, accuracy_ci = _share(tp + tn, len(truth))
    classification = {}
    for scheme, right in tally.correct.items():
        value, radius = _share(sum(right), len(right))
        classification[scheme] = {"accuracy": value, "accuracy_ci": radius, "n": len(right)}
    return {
        "images": images,
        "lung": _mean_with_radius(tally.lung_dsc, "dsc"),
        "infection": _mean_with_radius(tally.infection_dsc, "dsc"),
        "detection": {"sensitivity": sensitivity, "sensitivity_ci": sensitivity_ci, "specificity": specificity,
                      "specificity_ci": specificity_ci, "accuracy": accuracy, "accuracy_ci": accuracy_ci,
                      "n": len(truth), "positives": positives, "negatives": negatives},
        "classification": classification,
        "problems": tally.problems,
    }


def evaluate_collection(predictor, items: Iterable[ImportItem | ItemProblem],
                        progress: Callable[[int], None] | None = None) -> dict:
    """Score ``predictor`` (a RecognitionPredictor) on a layout's items; see the module docstring."""
    tally = _Tally()
    batch: list[_Loaded] = []
    scored = 0
    for item in items:
        if isinstance(item, ItemProblem):
            tally.problems.append(f"{item.name}: {item.reason}")
            continue
        try:
            batch.append(_load(item))
        except (AnnotatorError, OSError, ValueError) as exc:
            tally.problems.append(f"{item.name}: {exc}")
            continue
        if len(batch) == BATCH_SIZE:
            _score_batch(predictor, batch, tally)
            scored += len(batch)
            batch = []
            if progress is not None:
                progress(scored)
    if batch:
        _score_batch(predictor, batch, tally)
        scored += len(batch)
        if progress is not None:
            progress(scored)
    if scored == 0:
        raise AnnotatorError("no image of the collection could be scored"
                             + (f" ({len(tally.problems)} problems, first: {tally.problems[0]})" if tally.problems else ""))
    for problem in tally.problems:
        log.warning("skipped %s", problem)
    return _summary(tally, scored)
