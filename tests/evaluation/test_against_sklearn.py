"""Our metrics, ROC/AUC and fold assignment checked against scikit-learn's on random inputs.

scikit-learn is the reference (a test dependency); ours stay because they are pure numpy, return the
thesis' per-class figures with eq. 8's intervals, and keep sklearn out of the light import path.
"""

from __future__ import annotations

import numpy as np
import pytest

from annotator.evaluation.crossval import stratified_group_folds
from annotator.evaluation.metrics import classification_report, confusion_matrix, dice
from annotator.evaluation.roc import auc, one_vs_rest, roc_curve

sk_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference (pip install '.[dev]')")
sk_selection = pytest.importorskip("sklearn.model_selection")


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_and_per_class_figures_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 5))
    true = rng.integers(0, k, 200)
    pred = np.where(rng.random(200) < 0.6, true, rng.integers(0, k, 200))
    cm = confusion_matrix(true, pred, k)
    np.testing.assert_array_equal(cm, sk_metrics.confusion_matrix(true, pred, labels=list(range(k))))
    names = [f"c{i}" for i in range(k)]
    report = classification_report(cm, names)
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(true, pred, labels=list(range(k)),
                                                                                zero_division=0)
    for i, name in enumerate(names):
        row = report["classes"][name]
        assert row["n"] == support[i]
        assert row["sensitivity"] == pytest.approx(recall[i])
        assert row["precision"] == pytest.approx(precision[i])
        assert row["f1"] == pytest.approx(f1[i])
    weighted = sk_metrics.precision_recall_fscore_support(true, pred, average="weighted", zero_division=0)
    assert report["overall"]["precision"] == pytest.approx(weighted[0])
    assert report["overall"]["sensitivity"] == pytest.approx(weighted[1])
    assert report["overall"]["sensitivity"] == pytest.approx(sk_metrics.accuracy_score(true, pred))
    assert report["overall"]["f1"] == pytest.approx(weighted[2])


@pytest.mark.parametrize("seed", range(5))
def test_roc_and_auc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + 0.4 * y, 2)  # rounded: ties, as a classifier's scores have
    fpr, tpr = roc_curve(y, scores)
    sk_fpr, sk_tpr, _ = sk_metrics.roc_curve(y, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert auc(fpr, tpr) == pytest.approx(sk_metrics.roc_auc_score(y, scores))
    proba = rng.dirichlet(np.ones(3), 300)
    labels = rng.integers(0, 3, 300)
    curves = one_vs_rest(labels, proba, ["a", "b", "c"])
    ovr = sk_metrics.roc_auc_score(labels, proba, multi_class="ovr", average=None)
    assert [curves[c]["auc"] for c in "abc"] == pytest.approx(list(ovr))


def test_dice_matches_sklearn_f1_on_pixels():
    rng = np.random.default_rng(0)
    pred, true = rng.random((64, 64)) < 0.4, rng.random((64, 64)) < 0.5
    assert dice(pred, true) == pytest.approx(sk_metrics.f1_score(true.ravel(), pred.ravel()))


@pytest.mark.parametrize("seed", range(3))
def test_folds_keep_patients_whole_and_classes_as_even_as_sklearn(seed):
    """Our StratifiedGroupKFold: same guarantees as sklearn's (no patient in two folds, every sample once),
    and per-class fold shares at least as even, measured the way sklearn's algorithm scores them."""
    rng = np.random.default_rng(seed)
    n = 400
    groups = [f"p{g}" for g in rng.integers(0, 150, n)]
    labels = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    ours = stratified_group_folds(labels, groups, n_folds=5, seed=seed)
    splitter = sk_selection.StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    theirs = [test for _, test in splitter.split(np.zeros(n), labels, groups)]

    def spread(folds):
        counts = np.array([np.bincount(labels[f], minlength=3) for f in folds], dtype=float)
        return float(np.mean(np.std(counts / counts.sum(0), axis=0)))

    for folds in (ours, theirs):
        assert sorted(np.concatenate(folds).tolist()) == list(range(n))
        owner = {}
        for k, fold in enumerate(folds):
            for i in fold:
                assert owner.setdefault(groups[i], k) == k
    assert spread(ours) <= spread(theirs) + 0.01
