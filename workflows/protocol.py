"""The per-image protocol, declared in one place and validated at import. Pure: no DB, no Label Studio.

Stage I   seed images (hand-drawn masks) are the first repository:        pool -seed-> seed
Stage II  pool -predict-> predicted -accept-> accepted
                                     -reject-> rejected -correct-> corrected
                                     -doubt->  unsure -advise-> md_advised -adjust-> adjusted
                                     -exclude-> excluded
Stage III pool -nominate-> candidates -select-> selected | -deny-> denied -predict-> predicted (Stage II)
Stage IV  {seed, accepted, corrected, adjusted, selected} -sample-> sampled -verify-> verified
                                                                             -md_correct-> md_corrected
A decision synced earlier and edited afterwards in Label Studio re-opens the image (-reopen-> predicted)
so the newer decision wins and both stay in the history. Split membership is not a state (``splits``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from annotator.errors import ProtocolError, UnknownNameError

STATES: tuple[str, ...] = (
    "pool", "seed", "predicted", "accepted", "rejected", "corrected", "unsure", "md_advised", "adjusted",
    "excluded", "candidates", "selected", "denied", "sampled", "verified", "md_corrected",
)
INITIAL = "pool"
# States where an image may rest when the campaign ends.
RESTING: frozenset[str] = frozenset(
    {"seed", "accepted", "corrected", "adjusted", "excluded", "selected", "verified", "md_corrected"}
)
# States whose current lung mask is part of the repository (ground truth to train on).
IN_REPOSITORY: frozenset[str] = frozenset(
    {"seed", "accepted", "corrected", "adjusted", "selected", "verified", "md_corrected"}
)
VERIFIABLE: frozenset[str] = frozenset({"seed", "accepted", "corrected", "adjusted", "selected"})
REOPENABLE: frozenset[str] = frozenset({"accepted", "rejected", "corrected", "unsure", "md_advised", "excluded"})


@dataclass(frozen=True)
class Event:
    name: str
    sources: frozenset[str]
    target: str
    stage: int  # 1-4
    roles: frozenset[str]  # who may cause it: RA, MD or system


def _event(name: str, sources, target: str, stage: int, roles) -> Event:
    def as_set(x) -> frozenset[str]:
        return frozenset([x] if isinstance(x, str) else x)

    return Event(name, as_set(sources), target, stage, as_set(roles))


EVENTS: dict[str, Event] = {
    e.name: e
    for e in (
        _event("seed", "pool", "seed", 1, "system"),
        _event("predict", {"pool", "denied"}, "predicted", 2, "system"),
        _event("accept", "predicted", "accepted", 2, "RA"),
        _event("reject", "predicted", "rejected", 2, "RA"),
        _event("correct", "rejected", "corrected", 2, "RA"),
        _event("doubt", "predicted", "unsure", 2, "RA"),
        _event("advise", "unsure", "md_advised", 2, "MD"),
        _event("adjust", "md_advised", "adjusted", 2, {"RA", "MD"}),  # MD: the advice is "keep it as it is"
        _event("exclude", {"predicted", "unsure", "md_advised"}, "excluded", 2, {"RA", "MD"}),
        _event("reopen", REOPENABLE, "predicted", 2, "system"),
        _event("nominate", "pool", "candidates", 3, "system"),
        _event("select", "candidates", "selected", 3, "RA"),
        _event("deny", "candidates", "denied", 3, "RA"),
        _event("sample", VERIFIABLE, "sampled", 4, "system"),
        _event("verify", "sampled", "verified", 4, "MD"),
        _event("md_correct", "sampled", "md_corrected", 4, "MD"),
    )
}

PEOPLE: frozenset[str] = frozenset({"RA", "MD"})  # the roles that work Label Studio queues


def get_event(name: str) -> Event:
    try:
        return EVENTS[name]
    except KeyError:
        raise UnknownNameError("protocol event", name, EVENTS) from None


def allowed_events(state: str) -> list[str]:
    return sorted(e.name for e in EVENTS.values() if state in e.sources)


def next_state(state: str, event: str, image: object = "?") -> str:
    """The state after ``event``; an illegal event raises ProtocolError naming image, state and event."""
    if state not in STATES:
        raise ProtocolError(f"image {image}: unknown state {state!r}; valid: {', '.join(STATES)}")
    spec = get_event(event)
    if state not in spec.sources:
        allowed = ", ".join(allowed_events(state)) or "none"
        raise ProtocolError(f"image {image}: event {event!r} is not allowed in state {state!r} (allowed: {allowed})")
    return spec.target


def validate() -> None:
    """Every state is reachable from the initial one and every non-resting state can reach a resting one."""
    graph: dict[str, set[str]] = {s: set() for s in STATES}
    for e in EVENTS.values():
        unknown = (e.sources | {e.target}) - set(STATES)
        if unknown:
            raise ProtocolError(f"event {e.name!r} names unknown states {sorted(unknown)}")
        for s in e.sources:
            graph[s].add(e.target)
    seen, todo = {INITIAL}, deque([INITIAL])
    while todo:
        for nxt in graph[todo.popleft()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    if unreachable := set(STATES) - seen:
        raise ProtocolError(f"states unreachable from {INITIAL!r}: {sorted(unreachable)}")
    for state in STATES:
        if state in RESTING:
            continue
        seen, todo = {state}, deque([state])
        while todo and not (seen & RESTING):
            for nxt in graph[todo.popleft()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        if not seen & RESTING:
            raise ProtocolError(f"state {state!r} can never end (no path to a resting state)")


def replay(events: list[str], start: str = INITIAL, image: object = "?") -> str:
    """The state after a sequence of events (raises on the first illegal one)."""
    state = start
    for event in events:
        state = next_state(state, event, image)
    return state


validate()
