"""The scripted people's policy on real masks: thresholds, edit-driven lead times, selection, verification."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.evaluation.metrics import dice
from annotator.imaging.io import read_mask
from workflows.simulator import ScriptedPeople, SimulationPolicy, edit_share


@pytest.fixture
def truth(sample_data):
    return read_mask(sample_data / "masks/lung/CHNCXR_0002_0.png")


def _eroded(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    return cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=px)


def test_review_follows_the_dsc_thresholds(truth):
    people = ScriptedPeople(SimulationPolicy(accept_dsc=0.95, unsure_dsc=0.80, seed=1))
    assert people.review(truth, truth).decision == "accept"
    slightly_off = _eroded(truth, 4)
    d = dice(slightly_off, truth)
    assert 0.80 <= d < 0.95
    verdict = people.review(slightly_off, truth)
    assert verdict.decision == "reject" and verdict.mask is truth and verdict.dsc == pytest.approx(d)
    far_off = _eroded(truth, 20)
    assert people.review(far_off, truth).decision == "unsure"
    assert people.review(truth, None).decision == "exclude"


def test_lead_time_grows_with_the_editing(truth):
    people = ScriptedPeople(SimulationPolicy(seed=0, unsure_dsc=0.5))  # both edits are rejections here
    small = people.review(_eroded(truth, 3), truth)
    big = people.review(_eroded(truth, 7), truth)
    assert small.decision == big.decision == "reject"
    assert edit_share(_eroded(truth, 7), truth) > edit_share(_eroded(truth, 3), truth) > 0
    assert big.lead_time_s > small.lead_time_s > people.review(truth, truth).lead_time_s


def test_select_picks_the_closest_network_or_denies(truth):
    people = ScriptedPeople(SimulationPolicy(accept_dsc=0.95))
    masks = [_eroded(truth, k) for k in (9, 6, 0, 3, 12, 15)]
    verdict = people.select(masks, truth)
    assert (verdict.decision, verdict.detail, verdict.dsc) == ("select", "m3", 1.0)
    assert people.select([_eroded(truth, 9)] * 6, truth).decision == "deny"


def test_verify_or_correct(truth):
    people = ScriptedPeople(SimulationPolicy(accept_dsc=0.95))
    assert people.verify(truth, truth).decision == "verified"
    corrected = people.verify(_eroded(truth, 8), truth)
    assert corrected.decision == "md_corrected" and corrected.mask is truth
