"""Strategies that choose the next round's images.

A strategy receives candidate descriptions (no DB, no torch) and returns the chosen ids. ``stratified``
(the default, as the thesis did) covers the collection's diversity: strata are class x dataset x
resolution bin x contrast tercile x SNR tercile, each given a share of the round proportional to its size
(largest remainder, at least one image per stratum while the round has room). ``random`` draws uniformly.
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


def allocate(sizes: dict[tuple, int], total: int) -> dict[tuple, int]:
    """Proportional allocation by largest remainder; every stratum gets one first while room remains."""
    n = sum(sizes.values())
    total = min(total, n)
    if total <= 0:
        return {k: 0 for k in sizes}
    keys = sorted(sizes, key=lambda k: (-sizes[k], k))
    alloc = {k: 0 for k in sizes}
    if total >= len(keys):
        for k in keys:
            alloc[k] = 1
    else:  # fewer slots than strata: the largest strata get one each
        for k in keys[:total]:
            alloc[k] = 1
        return alloc
    remaining = total - len(keys)
    rest = {k: sizes[k] - 1 for k in keys}
    rest_n = sum(rest.values())
    if remaining and rest_n:
        quotas = {k: remaining * rest[k] / rest_n for k in keys}
        floors = {k: min(rest[k], math.floor(q)) for k, q in quotas.items()}
        for k in keys:
            alloc[k] += floors[k]
        left = remaining - sum(floors.values())
        by_remainder = sorted(keys, key=lambda k: (-(quotas[k] - floors[k]), k))
        while left > 0:
            progressed = False
            for k in by_remainder:
                if left and alloc[k] < sizes[k]:
                    alloc[k] += 1
                    left -= 1
                    progressed = True
            if not progressed:
                break
    return alloc


def choose_stratified(candidates: Sequence[Candidate], size: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    groups = strata(candidates)
    alloc = allocate({k: len(v) for k, v in groups.items()}, size)
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
