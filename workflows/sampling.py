"""Strategies that choose the next round's images.

A strategy receives candidate descriptions (no DB, no torch) and returns the chosen ids. ``stratified``
(the default, as the thesis did) covers the collection's diversity: strata are class x dataset x
resolution bin x contrast tercile x SNR tercile, each given a share of the round proportional to its size
(largest remainder), so that each round is a miniature of the collection. ``random`` draws uniformly.
``uncertainty`` takes the images the working network is least sure of (a score per candidate, computed by
the caller from the prediction's entropy or test-time-augmentation disagreement).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from annotator.errors import AnnotatorError, UnknownNameError


@dataclass(frozen=True)
class Candidate:
    image_id: int
    cls: str | None
    dataset: str | None
    resolution_bin: str
    contrast: float
    snr: float
    uncertainty: float | None = None


def _terciles(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    if not ordered:
        return (0.0, 0.0)
    return ordered[len(ordered) // 3], ordered[(2 * len(ordered)) // 3]


def _bin(value: float, cuts: tuple[float, float]) -> str:
    return "low" if value < cuts[0] else "mid" if value < cuts[1] else "high"


def strata(candidates: Sequence[Candidate]) -> dict[tuple, list[Candidate]]:
    contrast_cuts = _terciles([c.contrast for c in candidates])
    snr_cuts = _terciles([c.snr for c in candidates])
    groups: dict[tuple, list[Candidate]] = defaultdict(list)
    for c in candidates:
        key = (c.cls or "?", c.dataset or "?", c.resolution_bin, _bin(c.contrast, contrast_cuts), _bin(c.snr, snr_cuts))
        groups[key].append(c)
    return dict(groups)


def allocate(sizes: dict[tuple, int], total: int, seed: int = 0, cover: bool = False) -> dict[tuple, int]:
    """Proportional allocation by largest remainder (ties in a seeded random order).

    Stage II rounds use it plain, so every round is a miniature of the pool it is drawn from: rounds stay
    comparable, and a small stratum is drawn about as often as its share says, in turn across rounds (a
    floor of one per stratum would drain every rare stratum in the first round and leave the later ones
    to the commonest images). ``cover=True`` (a one-off sample such as Stage IV's test set) first gives
    every stratum one image, the largest strata first while slots remain, then shares the rest.
    """
    n = sum(sizes.values())
    total = min(total, n)
    alloc = {k: 0 for k in sizes}
    if total <= 0:
        return alloc
    if cover:
        keys = sorted(sizes, key=lambda k: (-sizes[k], k))
        for k in keys[:total]:
            alloc[k] = 1
        if total <= len(keys):
            return alloc
        rest = allocate({k: sizes[k] - 1 for k in sizes}, total - len(keys), seed)
        return {k: alloc[k] + rest[k] for k in sizes}
    quotas = {k: total * sizes[k] / n for k in sizes}
    for k in sizes:
        alloc[k] = min(sizes[k], math.floor(quotas[k]))
    rng = random.Random(seed)
    tiebreak = {k: rng.random() for k in sorted(sizes)}
    by_remainder = sorted(sizes, key=lambda k: (-(quotas[k] - alloc[k]), tiebreak[k]))
    left = total - sum(alloc.values())
    for k in by_remainder:
        if left == 0:
            break
        if alloc[k] < sizes[k]:
            alloc[k] += 1
            left -= 1
    return alloc


def choose_stratified(candidates: Sequence[Candidate], size: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    groups = strata(candidates)
    alloc = allocate({k: len(v) for k, v in groups.items()}, size, seed)
    chosen: list[int] = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda c: c.image_id)
        chosen.extend(c.image_id for c in rng.sample(members, alloc[key]))
    return sorted(chosen)


def choose_random(candidates: Sequence[Candidate], size: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    ids = sorted(c.image_id for c in candidates)
    return sorted(rng.sample(ids, min(size, len(ids))))


def choose_uncertain(candidates: Sequence[Candidate], size: int, seed: int = 0) -> list[int]:
    missing = [c.image_id for c in candidates if c.uncertainty is None]
    if missing:
        raise AnnotatorError(f"uncertainty sampling needs a score for every candidate; {len(missing)} have none")
    ranked = sorted(candidates, key=lambda c: (-(c.uncertainty or 0.0), c.image_id))
    return sorted(c.image_id for c in ranked[:size])


STRATEGIES: dict[str, Callable[[Sequence[Candidate], int, int], list[int]]] = {
    "stratified": choose_stratified,
    "random": choose_random,
    "uncertainty": choose_uncertain,
}


def choose(strategy: str, candidates: Sequence[Candidate], size: int, seed: int = 0) -> list[int]:
    try:
        func = STRATEGIES[strategy]
    except KeyError:
        raise UnknownNameError("sampling strategy", strategy, STRATEGIES) from None
    return func(candidates, size, seed)
