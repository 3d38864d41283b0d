import csv
from collections import Counter

import numpy as np
import pytest

from annotator.errors import ConfigError
from annotator.evaluation.crossval import grouped_holdout, stratified_group_folds


@pytest.fixture(scope="module")
def manifest_rows():
    from annotator.config import find_sample_data

    root = find_sample_data()
    if root is None:
        pytest.skip("the sample CXR set is not available")
    with (root / "manifest.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["class"] in ("covid", "non_covid_pneumonia", "normal")]


def test_folds_partition_the_real_set_without_splitting_patients(manifest_rows):
    classes = ["covid", "non_covid_pneumonia", "normal"]
    labels = [classes.index(r["class"]) for r in manifest_rows]
    groups = [r["patientid"] or r["file"] for r in manifest_rows]
    folds = stratified_group_folds(labels, groups, 5, seed=0)
    assert len(folds) == 5
    every = np.concatenate(folds)
    assert sorted(every.tolist()) == list(range(len(labels)))  # each image in exactly one test fold
    fold_of_group = {}
    for f, idx in enumerate(folds):
        for i in idx:
            assert fold_of_group.setdefault(groups[i], f) == f  # a patient never in two folds
    totals = Counter(labels)
    for idx in folds:
        counts = Counter(labels[i] for i in idx)
        for c, total in totals.items():  # stratified: each fold within 5 points of the class' overall share
            assert abs(counts[c] / len(idx) - total / len(labels)) < 0.05


def test_same_seed_same_folds():
    labels = [0, 1] * 10
    groups = [f"p{i}" for i in range(20)]
    a = stratified_group_folds(labels, groups, 4, seed=2)
    b = stratified_group_folds(labels, groups, 4, seed=2)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_more_folds_than_patients_is_a_clear_error():
    with pytest.raises(ConfigError, match="5 folds but only 3 patients"):
        stratified_group_folds([0, 1, 0, 1], ["a", "a", "b", "c"], 5)


def test_holdout_is_about_the_share_and_grouped():
    labels = [0] * 50 + [1] * 50
    groups = [f"p{i // 2}" for i in range(100)]  # two images per patient
    idx = grouped_holdout(labels, groups, 0.2)
    assert 16 <= len(idx) <= 24
    test_groups = {groups[i] for i in idx}
    assert all(groups[i] not in test_groups for i in set(range(100)) - set(idx.tolist()))
