"""Scripted RAs and MDs for the campaign simulator: they judge predictions against ground-truth masks.

The policy is pure (masks in, a verdict out); ``workflows.campaign`` makes them act through the real
Label Studio API. An RA accepts when DSC(prediction, truth) >= accept_dsc, marks the case unsure when the
DSC is below unsure_dsc (the worst cases, which an MD then advises on), and otherwise rejects and submits
the true mask. Lead times grow with the amount of editing (the share of pixels the RA had to change).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from annotator.evaluation.metrics import dice


@dataclass(frozen=True)
class SimulationPolicy:
    accept_dsc: float = 0.95
    unsure_dsc: float = 0.80
    look_s: float = 6.0  # seconds to look at a case
    edit_s_per_share: float = 240.0  # seconds to redraw a whole lung field
    md_advice_s: float = 45.0
    verify_s: float = 12.0
    edit_noise_px: int = 0  # the mask the person paints lies this many pixels off the truth (sideways)
    seed: int = 0


@dataclass(frozen=True)
class Verdict:
    decision: str  # accept | reject | unsure | exclude  (or select/deny, verified/md_corrected)
    mask: np.ndarray | None  # the mask the person submits (None: keep the prediction)
    dsc: float
    lead_time_s: float
    detail: str | None = None


def edit_share(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """The share of the true lung field the RA must repaint: |pred XOR truth| / |truth|."""
    pred, true = pred_mask > 0, true_mask > 0
    return float(np.count_nonzero(pred ^ true)) / max(1, int(np.count_nonzero(true)))


class ScriptedPeople:
    """Deterministic given the policy's seed and the order of calls."""

    def __init__(self, policy: SimulationPolicy):
        self.policy = policy
        self._rng = random.Random(policy.seed)

    def _jitter(self, seconds: float) -> float:
        return round(seconds * self._rng.uniform(0.8, 1.25), 2)

    def _edit_time(self, pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
        return self.policy.look_s + self.policy.edit_s_per_share * min(1.0, edit_share(pred_mask, true_mask))

    def _painted(self, true_mask: np.ndarray) -> np.ndarray:
        """The mask as this person paints it: the truth, ``edit_noise_px`` off to one side."""
        shift = self.policy.edit_noise_px
        return np.roll(true_mask, shift, axis=1) if shift else true_mask

    def review(self, pred_mask: np.ndarray, true_mask: np.ndarray | None) -> Verdict:
        """An RA's Stage II review."""
        if true_mask is None:
            return Verdict("exclude", None, float("nan"), self._jitter(self.policy.look_s), "no reference mask")
        score = dice(pred_mask, true_mask)
        if score >= self.policy.accept_dsc:
            return Verdict("accept", None, score, self._jitter(self.policy.look_s))
        if score < self.policy.unsure_dsc:
            return Verdict("unsure", None, score, self._jitter(self.policy.look_s * 2))
        return Verdict("reject", self._painted(true_mask), score, self._jitter(self._edit_time(pred_mask, true_mask)))

    def advise(self, pred_mask: np.ndarray, true_mask: np.ndarray | None) -> Verdict:
        """An MD's advice on an unsure case."""
        score = dice(pred_mask, true_mask) if true_mask is not None else float("nan")
        return Verdict("advise", None, score, self._jitter(self.policy.md_advice_s),
                       "follow the true lung borders; include the costophrenic angles")

    def adjust(self, pred_mask: np.ndarray, true_mask: np.ndarray | None) -> Verdict:
        """The RA adjusts the mask following the MD's advice (keeps it when there is no reference)."""
        if true_mask is None:
            return Verdict("adjust", pred_mask, float("nan"), self._jitter(self.policy.look_s))
        return Verdict("adjust", self._painted(true_mask), dice(pred_mask, true_mask),
                       self._jitter(self._edit_time(pred_mask, true_mask)))

    def select(self, candidate_masks: list[np.ndarray], true_mask: np.ndarray | None) -> Verdict:
        """Stage III: pick the network closest to the truth (m1..m6) or deny when none passes."""
        if true_mask is None:
            return Verdict("deny", None, float("nan"), self._jitter(self.policy.look_s * 3))
        scores = [dice(m, true_mask) for m in candidate_masks]
        best = int(np.argmax(scores))
        lead = self._jitter(self.policy.look_s * 3)
        if scores[best] >= self.policy.accept_dsc:
            return Verdict("select", None, scores[best], lead, f"m{best + 1}")
        return Verdict("deny", None, scores[best], lead)

    def verify(self, mask: np.ndarray, true_mask: np.ndarray | None) -> Verdict:
        """Stage IV: an MD verifies a repository mask, or corrects it to the truth."""
        if true_mask is None:
            return Verdict("verified", None, float("nan"), self._jitter(self.policy.verify_s))
        score = dice(mask, true_mask)
        if score >= self.policy.accept_dsc:
            return Verdict("verified", None, score, self._jitter(self.policy.verify_s))
        return Verdict("md_corrected", true_mask, score, self._jitter(self._edit_time(mask, true_mask)))
