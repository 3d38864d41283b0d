"""The simulated team's rota: the queue's role in turn, two different RAs on a double read, one scripted
RA in an MD queue; passwords derived from the workspace secret, never stored."""

from __future__ import annotations

import numpy as np

from annotator.config import load_settings
from workflows.simulator import ScriptedPeople, SimulationPolicy
from workflows.team_sim import PROFILES, Member, ScriptedTeam, simulated_password


def _team() -> ScriptedTeam:
    members = [Member(f"{p.name}@t", p.role, ScriptedPeople(SimulationPolicy()), ls=None) for p in PROFILES]
    return ScriptedTeam(members)


def test_each_queue_is_worked_in_turn_by_its_role_and_a_double_read_by_two_people():
    team = _team()
    assert [m.email for m in team.actors("ra_review")] == ["ra-ana@t"]
    assert [m.email for m in team.actors("ra_review", overlap=2)] == ["ra-ben@t", "ra-cleo@t"]
    assert [m.email for m in team.actors("ra_review")] == ["ra-ana@t"]
    assert [m.email for m in team.actors("md_advice")] == ["md-dora@t"]
    assert [m.email for m in team.actors("md_verify", overlap=5)] == ["md-emil@t", "md-dora@t"]  # two MDs only
    assert team.intruder("ra_review") is None
    assert team.intruder("md_advice").email == "ra-ana@t" and team.intruder("md_verify") is None  # once


def test_passwords_are_derived_per_workspace_and_person(tmp_path):
    one = load_settings(workspace=tmp_path / "a", labelstudio_password="secret-one-0123456789")
    two = load_settings(workspace=tmp_path / "b", labelstudio_password="secret-two-0123456789")
    assert simulated_password(one, "ra-ana@x") == simulated_password(one, "ra-ana@x")
    assert len({simulated_password(one, "ra-ana@x"), simulated_password(one, "ra-ben@x"),
                simulated_password(two, "ra-ana@x")}) == 3
    assert len(simulated_password(one, "ra-ana@x")) == 24


def test_editing_noise_moves_the_painted_mask():
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:10] = 255
    pred = np.zeros_like(truth)
    pred[5:15, 5:9] = 255  # DSC 2*40/(40+50) = 0.889: under accept (0.95), over unsure (0.80): a reject
    careless = ScriptedPeople(SimulationPolicy(edit_noise_px=3)).review(pred, truth)
    careful = ScriptedPeople(SimulationPolicy()).review(pred, truth)
    assert careless.decision == careful.decision == "reject"
    assert np.array_equal(careful.mask, truth) and np.array_equal(careless.mask, np.roll(truth, 3, axis=1))
