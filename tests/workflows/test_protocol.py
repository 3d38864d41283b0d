"""The protocol's declaration: every legal path, every illegal event, and the import-time validation."""

from __future__ import annotations

import itertools

import pytest

from annotator.errors import ProtocolError, UnknownNameError
from workflows import protocol

LEGAL_PATHS = {
    ("seed",): "seed",
    ("predict", "accept"): "accepted",
    ("predict", "reject", "correct"): "corrected",
    ("predict", "doubt", "advise", "adjust"): "adjusted",
    ("predict", "exclude"): "excluded",
    ("predict", "doubt", "exclude"): "excluded",
    ("predict", "doubt", "advise", "exclude"): "excluded",
    ("predict", "accept", "reopen", "reject", "correct"): "corrected",
    ("nominate", "select"): "selected",
    ("nominate", "deny", "predict", "accept"): "accepted",
    ("seed", "sample", "verify"): "verified",
    ("predict", "accept", "sample", "md_correct"): "md_corrected",
    ("nominate", "select", "sample", "verify"): "verified",
    ("predict", "doubt", "advise", "adjust", "sample", "verify"): "verified",
}


@pytest.mark.parametrize("events,expected", LEGAL_PATHS.items())
def test_legal_paths_end_where_the_protocol_says(events, expected):
    assert protocol.replay(list(events)) == expected


def test_every_event_is_exercised_by_a_legal_path():
    used = set(itertools.chain.from_iterable(LEGAL_PATHS))
    assert used == set(protocol.EVENTS)


def test_every_illegal_event_names_image_state_and_event():
    illegal = [(s, e) for s in protocol.STATES for e in protocol.EVENTS if s not in protocol.EVENTS[e].sources]
    assert len(illegal) > 150  # the table is mostly "no"
    for state, event in illegal:
        with pytest.raises(ProtocolError) as err:
            protocol.next_state(state, event, image=42)
        text = str(err.value)
        assert "image 42" in text and repr(event) in text and repr(state) in text


def test_unknown_event_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        protocol.next_state("pool", "approve", image=1)
    assert "accept" in str(err.value) and "verify" in str(err.value)


def test_resting_states_have_no_way_back_into_review_except_reopen_and_sampling():
    for state in protocol.RESTING:
        for event in protocol.allowed_events(state):
            assert event in {"reopen", "sample", "predict"} or state == "denied"


def test_validation_rejects_an_unreachable_state(monkeypatch):
    monkeypatch.setattr(protocol, "STATES", protocol.STATES + ("limbo",))
    with pytest.raises(ProtocolError, match="unreachable.*limbo"):
        protocol.validate()


def test_validation_rejects_a_state_that_can_never_end(monkeypatch):
    events = dict(protocol.EVENTS)
    events["trap"] = protocol.Event("trap", frozenset({"pool"}), "limbo", 2, "system")
    monkeypatch.setattr(protocol, "STATES", protocol.STATES + ("limbo",))
    monkeypatch.setattr(protocol, "EVENTS", events)
    with pytest.raises(ProtocolError, match="limbo.*never end"):
        protocol.validate()
