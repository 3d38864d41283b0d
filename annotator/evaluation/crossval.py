"""Stratified k-fold cross-validation grouped by patient (no patient in two folds), and the patient-grouped
hold-out split used when a workspace has no verified test set. Pure numpy, deterministic for a seed.

The fold assignment follows scikit-learn's StratifiedGroupKFold: groups, largest class spread first, go
to the fold where the per-class fold shares stay most even (ties: the smaller fold).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annotator.errors import ConfigError


def _group_counts(labels: Sequence[int], groups: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    names = sorted(set(groups), key=str)
    index = {g: i for i, g in enumerate(names)}
    classes = sorted(set(int(v) for v in labels))
    cindex = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(names), len(classes)), dtype=np.int64)
    member = np.empty(len(labels), dtype=np.int64)
    for k, (lab, grp) in enumerate(zip(labels, groups, strict=True)):
        counts[index[grp], cindex[int(lab)]] += 1
        member[k] = index[grp]
    return names, counts, member


def stratified_group_folds(labels: Sequence[int], groups: Sequence[str], n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Fold number (0..n_folds-1) per sample -> returned as a list of test-index arrays, one per fold."""
    if n_folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {n_folds}")
    names, counts, member = _group_counts(labels, groups)
    if len(names) < n_folds:
        raise ConfigError(
            f"{n_folds} folds but only {len(names)} patients ({len(labels)} images): lower `folds` to at most {len(names)}"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    spread = np.std(counts[order] / np.maximum(counts[order].sum(1, keepdims=True), 1), axis=1)
    order = order[np.argsort(-spread, kind="stable")]
    class_totals = counts.sum(0).astype(np.float64)
    fold_counts = np.zeros((n_folds, counts.shape[1]), dtype=np.float64)
    fold_of_group = np.empty(len(names), dtype=np.int64)
    for g in order:
        best, best_key = 0, None
        for f in range(n_folds):
            fold_counts[f] += counts[g]
            std = float(np.mean(np.std(fold_counts / class_totals, axis=0)))
            fold_counts[f] -= counts[g]
            key = (std, fold_counts[f].sum())
            if best_key is None or key < best_key:
                best, best_key = f, key
        fold_counts[best] += counts[g]
        fold_of_group[g] = best
    fold_of_sample = fold_of_group[member]
    return [np.flatnonzero(fold_of_sample == f) for f in range(n_folds)]


def grouped_holdout(labels: Sequence[int], groups: Sequence[str], test_share: float = 0.2, seed: int = 0) -> np.ndarray:
    """Indices of a patient-grouped, class-stratified test set of about ``test_share`` of the images."""
    if not 0 < test_share < 1:
        raise ConfigError(f"test_share must be between 0 and 1, got {test_share}")
    n_folds = max(2, int(round(1 / test_share)))
    return stratified_group_folds(labels, groups, n_folds=n_folds, seed=seed)[0]
