"""Round sampling strategies and the anatomical QC on real sample masks."""

from __future__ import annotations

from collections import Counter

import pytest

from annotator.errors import AnnotatorError, UnknownNameError
from annotator.imaging.io import read_mask
from workflows.qc import check_lung_mask
from workflows.sampling import Candidate, allocate, choose, strata


def _pool() -> list[Candidate]:
    out = []
    for i in range(300):
        cls = "covid" if i < 200 else "normal" if i < 280 else "sars"
        out.append(Candidate(i, cls, "a" if i % 2 else "b", "xs", contrast=(i % 7) / 7, snr=float(i % 11)))
    return out


def test_allocate_is_proportional_and_sums_to_the_round():
    alloc = allocate({"big": 80, "mid": 15, "small": 5}, 20)
    assert sum(alloc.values()) == 20
    assert alloc == {"big": 15, "mid": 3, "small": 2}  # 1 each, then 17 by largest remainder over 77/14/4


def test_allocate_with_fewer_slots_than_strata_takes_the_largest():
    assert allocate({"a": 5, "b": 9, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}


def test_stratified_covers_every_class_and_is_deterministic():
    pool = _pool()
    chosen = choose("stratified", pool, 60, seed=3)
    assert len(chosen) == len(set(chosen)) == 60
    by_class = Counter(pool[i].cls for i in chosen)
    assert set(by_class) == {"covid", "normal", "sars"}
    assert by_class["covid"] > by_class["normal"] > by_class["sars"] >= 1
    assert chosen == choose("stratified", pool, 60, seed=3)
    assert chosen != choose("stratified", pool, 60, seed=4)
    assert len(strata(pool)) > 10


def test_random_and_uncertainty():
    pool = [Candidate(i, "c", "d", "xs", 0.1, 1.0, uncertainty=i / 10) for i in range(10)]
    assert choose("uncertainty", pool, 3) == [7, 8, 9]
    assert len(choose("random", pool, 4, seed=1)) == 4
    with pytest.raises(AnnotatorError, match="needs a score"):
        choose("uncertainty", [Candidate(1, "c", "d", "xs", 0.1, 1.0)], 1)
    with pytest.raises(UnknownNameError, match="stratified"):
        choose("greedy", pool, 1)


def test_qc_passes_real_lung_masks_and_flags_broken_ones(sample_data):
    good = read_mask(sample_data / "masks/lung/MCUCXR_0001_0.png")
    result = check_lung_mask(good)
    assert result.ok and result.lungs == 2 and 0.08 < result.area_share < 0.65
    one_lung = good.copy()
    one_lung[:, : good.shape[1] // 2] = 0
    assert check_lung_mask(one_lung).flags == ("1 lung region(s), expected 2",)
    speckled = good.copy()
    speckled[2:5, 2:5] = 255
    flagged = check_lung_mask(speckled)
    assert not flagged.ok and flagged.fragments == 1 and "1 fragment(s)" in flagged.text
    assert check_lung_mask(good * 0).flags == ("empty mask",)
