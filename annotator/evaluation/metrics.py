"""The thesis' metrics (eq. 8-17) with 95% intervals r = 1.96 * sqrt(m (1 - m) / N) (eq. 8).

N is what the thesis counts: the number of test images for every classification figure, per class
and overall (its Table 10's +-0.73 comes from 6,788 test images), the number of images for per-image
segmentation means, and the number of pixels for pooled segmentation figures.

Segmentation: pixel accuracy, IoU and DSC of a predicted against a true mask, per image (mean over
images) and pooled (all pixels of all images counted together). Classification: per class accuracy,
precision, sensitivity (recall), F1 and specificity from a confusion matrix (rows true, columns
predicted), and the overall figure weighted by class size. Pure numpy; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z_95 = 1.96


def confidence_radius(m: float, n: int) -> float:
    """The 95% interval's radius for a proportion m measured on n samples."""
    if n <= 0:
        return float("nan")
    m = min(max(float(m), 0.0), 1.0)
    return Z_95 * math.sqrt(m * (1.0 - m) / n)


def _counts(pred_mask: np.ndarray, true_mask: np.ndarray) -> tuple[int, int, int, int]:
    pred = np.asarray(pred_mask) > 0
    true = np.asarray(true_mask) > 0
    if pred.shape != true.shape:
        raise ValueError(f"mask shapes differ: predicted {pred.shape}, true {true.shape}")
    tp = int(np.count_nonzero(pred & true))
    fp = int(np.count_nonzero(pred & ~true))
    fn = int(np.count_nonzero(~pred & true))
    tn = int(pred.size - tp - fp - fn)
    return tp, fp, fn, tn


def _dice_from(tp: int, fp: int, fn: int) -> float:
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom  # two empty masks agree perfectly


def _iou_from(tp: int, fp: int, fn: int) -> float:
    denom = tp + fp + fn
    return 1.0 if denom == 0 else tp / denom


def dice(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """DSC = 2 TP / (2 TP + FP + FN); 1.0 when both masks are empty."""
    tp, fp, fn, _ = _counts(pred_mask, true_mask)
    return _dice_from(tp, fp, fn)


def iou(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """IoU = TP / (TP + FP + FN); 1.0 when both masks are empty."""
    tp, fp, fn, _ = _counts(pred_mask, true_mask)
    return _iou_from(tp, fp, fn)


def pixel_accuracy(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """(TP + TN) / all pixels."""
    tp, fp, fn, tn = _counts(pred_mask, true_mask)
    return (tp + tn) / (tp + fp + fn + tn)


def segmentation_scores(pred_masks: Sequence[np.ndarray], true_masks: Sequence[np.ndarray]) -> dict:
    """Per-image means and pooled values of accuracy, IoU and DSC, each with its 95% radius.

    Returns ``{"n": N, "dsc": .., "iou": .., "accuracy": .., "dsc_ci": .., ..., "pooled": {...}}`` where
    the radii of the per-image means use N images and the pooled ones N pixels.
    """
    if len(pred_masks) != len(true_masks):
        raise ValueError(f"{len(pred_masks)} predicted masks but {len(true_masks)} true masks")
    if not pred_masks:
        raise ValueError("no masks to score")
    per_image = {"dsc": [], "iou": [], "accuracy": []}
    total = np.zeros(4, dtype=np.int64)
    for pred, true in zip(pred_masks, true_masks, strict=True):
        tp, fp, fn, tn = _counts(pred, true)
        total += (tp, fp, fn, tn)
        per_image["dsc"].append(_dice_from(tp, fp, fn))
        per_image["iou"].append(_iou_from(tp, fp, fn))
        per_image["accuracy"].append((tp + tn) / (tp + fp + fn + tn))
    n = len(pred_masks)
    out: dict = {"n": n}
    for key, values in per_image.items():
        mean = float(np.mean(values))
        out[key] = mean
        out[f"{key}_ci"] = confidence_radius(mean, n)
    tp, fp, fn, tn = (int(v) for v in total)
    pixels = tp + fp + fn + tn
    pooled = {"dsc": _dice_from(tp, fp, fn), "iou": _iou_from(tp, fp, fn), "accuracy": (tp + tn) / pixels}
    out["pooled"] = {**pooled, **{f"{k}_ci": confidence_radius(v, pixels) for k, v in pooled.items()}, "pixels": pixels}
    return out


def confusion_matrix(true_labels: Sequence[int], pred_labels: Sequence[int], n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(true_labels, pred_labels, strict=True):
        cm[int(t), int(p)] += 1
    return cm


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def classification_report(confusion: np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class and class-size-weighted overall accuracy, precision, sensitivity, F1, specificity.

    Each class is scored one-versus-rest (thesis eq. 12-16): accuracy = (TP+TN)/N, precision =
    TP/(TP+FP), sensitivity = TP/(TP+FN), F1 = 2PS/(P+S), specificity = TN/(TN+FP). The radius of
    every figure, per class and overall, uses N, the number of test images (eq. 8). Returns
    ``{"n": N, "classes": {name: {"n": .., "accuracy": .., "accuracy_ci": .., ...}}, "overall": {...}}``.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix is {cm.shape}, expected {(k, k)} for classes {list(class_names)}")
    n = int(cm.sum())
    classes: dict[str, dict] = {}
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        fn = int(cm[i].sum() - tp)
        fp = int(cm[:, i].sum() - tp)
        tn = n - tp - fn - fp
        precision = _ratio(tp, tp + fp)
        sensitivity = _ratio(tp, tp + fn)
        if tp > 0:
            f1 = 2 * precision * sensitivity / (precision + sensitivity)
        else:  # no hit: 0 when the class occurs or is predicted, undefined when it never appears
            f1 = 0.0 if tp + fp + fn else float("nan")
        row = {
            "n": tp + fn,
            "accuracy": _ratio(tp + tn, n),
            "precision": precision,
            "sensitivity": sensitivity,
            "f1": f1,
            "specificity": _ratio(tn, tn + fp),
        }
        for key in ("accuracy", "precision", "sensitivity", "f1", "specificity"):
            row[f"{key}_ci"] = float("nan") if math.isnan(row[key]) else confidence_radius(row[key], n)
        classes[name] = row
    overall: dict = {"n": n}
    sizes = np.array([classes[c]["n"] for c in class_names], dtype=np.float64)
    for key in ("accuracy", "precision", "sensitivity", "f1", "specificity"):
        values = np.array([classes[c][key] for c in class_names], dtype=np.float64)
        ok = ~np.isnan(values) & (sizes > 0)
        value = float(np.sum(values[ok] * sizes[ok]) / np.sum(sizes[ok])) if ok.any() else float("nan")
        overall[key] = value
        overall[f"{key}_ci"] = confidence_radius(value, n) if not math.isnan(value) else float("nan")
    return {"n": n, "classes": classes, "overall": overall}
