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
    assert allocate({"big": 80, "mid": 15, "small": 5}, 20) == {"big": 16, "mid": 3, "small": 1}
    alloc = allocate({"big": 81, "mid": 14, "small": 5}, 20)  # quotas 16.2, 2.8, 1.0
    assert alloc == {"big": 16, "mid": 3, "small": 1}


def test_allocate_gives_leftover_slots_to_small_strata_in_turn():
    sizes = {f"s{i}": 1 for i in range(10)} | {"big": 90}  # ten strata with a quota of 0.1 each
    taken = [k for seed in range(20) for k, n in allocate(sizes, 10, seed).items() if n and k != "big"]
    assert all(allocate(sizes, 10, seed)["big"] == 9 for seed in range(20))
    assert len(taken) == 20 and len(set(taken)) >= 8  # one small stratum per round, a different one mostly
    assert allocate({"a": 5, "b": 9, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}


def test_a_covering_allocation_gives_every_stratum_one_first():
    assert allocate({"big": 80, "mid": 15, "small": 5}, 20, cover=True) == {"big": 15, "mid": 3, "small": 2}
    assert allocate({"a": 5, "b": 9, "c": 1}, 2, cover=True) == {"a": 1, "b": 1, "c": 0}  # the largest first
    assert allocate({"a": 5, "b": 9, "c": 1}, 3, cover=True) == {"a": 1, "b": 1, "c": 1}


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
