"""ROC curves (one class versus the rest) and their area. Pure numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def roc_curve(is_positive: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct score, from (0,0) to (1,1)."""
    y = np.asarray(is_positive, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1] if y.size else np.array([], dtype=int)
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    pos, neg = int(y.sum()), int((~y).sum())
    tpr = np.r_[0.0, tps / pos] if pos else np.r_[0.0, np.full(tps.size, np.nan)]
    fpr = np.r_[0.0, fps / neg] if neg else np.r_[0.0, np.full(fps.size, np.nan)]
    return fpr, tpr


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under a ROC curve; NaN when one side has no sample."""
    if np.isnan(fpr).any() or np.isnan(tpr).any() or fpr.size < 2:
        return float("nan")
    return float(np.trapezoid(tpr, fpr))


def one_vs_rest(true_labels: Sequence[int], proba: np.ndarray, class_names: Sequence[str]) -> dict[str, dict]:
    """Per class: fpr, tpr, auc and the class' n (positives)."""
    labels = np.asarray(true_labels, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    out = {}
    for k, name in enumerate(class_names):
        fpr, tpr = roc_curve(labels == k, proba[:, k])
        out[name] = {"fpr": fpr, "tpr": tpr, "auc": auc(fpr, tpr), "n": int((labels == k).sum())}
    return out
