"""Agreement between two RAs who read the same task: Cohen's kappa on their decisions and the Dice score
(DSC) between their final masks, per round and per pair of RAs.

A pair is two decisions on one task by two different people (the double reads; refused ones do not
count). Kappa is undefined (None) when both readers gave one and the same label on every task of the
pair: there is nothing to tell chance from agreement.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from statistics import mean

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Decision, Task

DISAGREE_DSC = 0.90  # two readers' masks under this DSC disagree (the case goes to the MD queue)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when it is undefined."""
    if len(a) != len(b):
        raise ValueError(f"two raters need the same items: {len(a)} vs {len(b)} labels")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[label] * count_b[label] for label in count_a.keys() | count_b.keys()) / (n * n)
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def read_pairs(session: Session, round_id: int | None = None) -> list[tuple[Decision, Decision]]:
    """The first two decisions by two different people on each RA review task read twice."""
    query = (select(Decision).join(Task, Task.id == Decision.task_id)
             .where(Task.queue == "ra_review", Decision.refused.is_(False), Decision.ls_user_id.is_not(None))
             .order_by(Decision.task_id, Decision.id))
    if round_id is not None:
        query = query.where(Decision.round_id == round_id)
    by_task: dict[int, dict[int, Decision]] = defaultdict(dict)
    for row in session.scalars(query):
        by_task[row.task_id].setdefault(row.ls_user_id, row)
    return [tuple(list(people.values())[:2]) for people in by_task.values() if len(people) >= 2]


def summarise(pairs: Sequence[tuple[Decision, Decision]]) -> dict:
    """{"pairs": n, "kappa": ..., "dsc": mean DSC of the pairs' masks (None when none has one)}."""
    kappa = cohen_kappa([a.decision for a, _ in pairs], [b.decision for _, b in pairs])
    scores = [a.pair_dsc for a, _ in pairs if a.pair_dsc is not None]
    return {"pairs": len(pairs), "kappa": None if kappa is None else round(kappa, 4),
            "dsc": round(mean(scores), 4) if scores else None}


def agreement(session: Session) -> dict:
    """Overall, per round and per pair of RAs (by e-mail, in order), for the campaign report."""
    pairs = read_pairs(session)
    by_round: dict[int | None, list] = defaultdict(list)
    by_people: dict[tuple[str, str], list] = defaultdict(list)
    for a, b in pairs:
        by_round[a.round_id].append((a, b))
        first, second = sorted((a, b), key=lambda d: d.actor)
        by_people[(first.actor, second.actor)].append((first, second))
    return {**summarise(pairs),
            "rounds": [{"round_id": r, **summarise(p)} for r, p in sorted(by_round.items(), key=lambda kv: kv[0] or 0)],
            "ra_pairs": [{"ras": list(k), **summarise(p)} for k, p in sorted(by_people.items())]}
