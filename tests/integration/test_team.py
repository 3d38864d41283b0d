"""A team against a real Label Studio: three accounts of their own (two RAs, one MD), each working with
their own personal access token. A decision is attributed to the person who made it and takes their role;
an RA's annotation in the MD queue, and one by an account outside the team, are refused and leave the
task open; the MD's decision on that task is then applied."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotator.cli.main import app
from annotator.config import load_settings
from annotator.imaging.io import read_mask
from annotator.labelstudio.acting import submit_annotation
from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.server import free_port
from annotator.labelstudio.users import login_token
from db.engine import session_scope
from db.models import Decision, Image, Mask, Round, Task, Transition
from db.queries import reference_mask
from workflows import engine
from workflows.people import add_person
from workflows.queues import push, sync_queues

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def team(tmp_path_factory, sample_data, campaign_tools):
    """A workspace with ten pool images, its own Label Studio, and a team of ra1, ra2 (RAs) and md1 (MD):
    (e-mail, Label Studio user id, first password) each, and a client logged in with their own personal
    access token."""
    pytest.importorskip("label_studio", reason="needs the label-studio package")
    from annotator.ingest.importer import import_collection
    from annotator.labelstudio.server import start_server, stop_server
    from annotator.workspace import init_workspace

    root = tmp_path_factory.mktemp("team")
    subset = campaign_tools[0](sample_data, root / "collection", n_seed=0, n_pool=10)
    port = free_port()
    init_workspace(load_settings(workspace=root / "ws", labelstudio_port=port))
    settings = load_settings(workspace=root / "ws", labelstudio_port=port)  # with the secrets init made
    with session_scope(settings.database_url) as session:
        assert import_collection(session, settings, subset, "manifest").ok
    info = start_server(settings, timeout_s=300)
    try:
        admin = LabelStudio(settings)
        people, clients = {}, {}
        with session_scope(settings.database_url) as session:
            for who, role in (("ra1", "ra"), ("ra2", "ra"), ("md1", "md")):
                added = add_person(session, admin, f"{who}-{uuid.uuid4().hex[:6]}@example.org", role)
                people[who] = (added.person.email, added.person.ls_user_id, added.password)
                token = login_token(settings.labelstudio_base_url, added.person.email, added.password)
                clients[who] = LabelStudio(settings.model_copy(update={"labelstudio_token": token}))
        yield settings, admin, people, clients
    finally:
        stop_server(settings, process=info.process)


def _task(settings, admin, queue: str, events: tuple[str, ...], payload_extra: dict | None = None) -> tuple[int, int]:
    """A round-1 task of ``queue`` on the next pool image, moved through ``events``, pushed; (task id, ls id)."""
    with session_scope(settings.database_url) as session:
        round_ = session.scalar(select(Round).where(Round.stage == 2, Round.number == 1))
        if round_ is None:
            round_ = Round(stage=2, number=1, size=10, strategy="random", model_version="seed-as-prediction")
            session.add(round_)
            session.flush()
        image = session.scalars(select(Image).where(Image.state == "pool").order_by(Image.id)).first()
        for event in events:
            engine.move(session, image, event, actor="system", role="system" if event == "predict" else "RA",
                        round_id=round_.id)
        ref = reference_mask(session, image.id)
        task = Task(image_id=image.id, round_id=round_.id, queue=queue, model_version="seed-as-prediction",
                    payload={"mask_id": ref.id, "qc": "", **(payload_extra or {})})
        session.add(task)
        session.flush()
        push(session, settings, admin, queue, progress=False)
        return task.id, task.ls_task_id


def _rows(settings, task_id: int) -> list[Decision]:
    with session_scope(settings.database_url, write=False) as session:
        rows = list(session.scalars(select(Decision).where(Decision.task_id == task_id).order_by(Decision.id)))
        session.expunge_all()
        return rows


def _ref_mask(settings, task_id: int):
    with session_scope(settings.database_url, write=False) as session:
        task = session.get(Task, task_id)
        image = session.get(Image, task.image_id)
        return read_mask(settings.workspace_path / session.get(Mask, task.payload["mask_id"]).store_path,
                         (image.height, image.width))


def test_an_ras_decision_is_attributed_to_that_ra(team):
    settings, admin, people, clients = team
    task_id, ls_task_id = _task(settings, admin, "ra_review", ("predict",))
    submit_annotation(clients["ra1"], ls_task_id, "ra_review", "accept", mask=_ref_mask(settings, task_id),
                      lead_time_s=7.5)
    report = sync_queues(settings, admin, ("ra_review",), progress=False)
    assert report["recorded"] == {"ra_review:accept": 1} and report["refused"] == []
    (row,) = _rows(settings, task_id)
    email, uid, _password = people["ra1"]
    assert (row.actor, row.role, row.ls_user_id, row.valid, row.refused, row.lead_time_s) == (email, "RA", uid, True,
                                                                                              False, 7.5)
    with session_scope(settings.database_url, write=False) as session:
        image = session.get(Image, row.image_id)
        moved = session.scalars(select(Transition).where(Transition.image_id == image.id,
                                                         Transition.event == "accept")).one()
        mask = session.scalars(select(Mask).where(Mask.decision_id == row.id)).one()
        assert (image.state, moved.actor, moved.role, mask.author, mask.origin) == ("accepted", email, "RA", email,
                                                                                    "ra_accepted")


def test_an_ra_in_the_md_queue_is_refused_and_the_task_stays_open_for_the_md(team):
    settings, admin, people, clients = team
    task_id, ls_task_id = _task(settings, admin, "md_advice", ("predict", "doubt"), {"ra_case": "borders?"})
    submit_annotation(clients["ra2"], ls_task_id, "md_advice", "accept")
    report = sync_queues(settings, admin, ("md_advice",), progress=False)
    assert report["recorded"] == {} and len(report["refused"]) == 1
    assert f"made by {people['ra2'][0]}, an RA; queue md_advice takes MD decisions only" in report["refused"][0]
    (refused,) = _rows(settings, task_id)
    assert (refused.actor, refused.role, refused.ls_user_id, refused.refused, refused.valid) == (
        people["ra2"][0], "RA", people["ra2"][1], True, False)
    with session_scope(settings.database_url, write=False) as session:
        assert session.get(Task, task_id).status == "open"
        assert session.get(Image, refused.image_id).state == "unsure"
    again = sync_queues(settings, admin, ("md_advice",), progress=False)
    assert again["refused"] == [] and again["skipped"] == 1 and len(_rows(settings, task_id)) == 1  # once
    status = CliRunner().invoke(app, ["--workspace", str(settings.workspace_path), "round", "status", "--json"],
                                env={"ANNOTATOR_LABELSTUDIO_PORT": str(settings.labelstudio_port)})
    (round_row,) = json.loads(status.output)
    assert [(r["image_id"], r["actor"]) for r in round_row["refused"]] == [(refused.image_id, people["ra2"][0])]
    assert round_row["quarantined"] == []

    # the MD's decision on the same task is applied, attributed to the MD
    submit_annotation(clients["md1"], ls_task_id, "md_advice", "accept", text="fine as it is")
    report = sync_queues(settings, admin, ("md_advice",), progress=False)
    assert report["recorded"] == {"md_advice:accept": 1} and report["refused"] == []
    rows = _rows(settings, task_id)
    assert [(r.actor, r.role, r.valid, r.refused) for r in rows] == [
        (people["ra2"][0], "RA", False, True), (people["md1"][0], "MD", True, False)]
    with session_scope(settings.database_url, write=False) as session:
        assert session.get(Task, task_id).status == "done"
        assert session.get(Image, rows[1].image_id).state == "adjusted"


def test_an_account_outside_the_team_is_refused(team):
    settings, admin, _people, _clients = team
    task_id, ls_task_id = _task(settings, admin, "ra_review", ("predict",))
    submit_annotation(admin, ls_task_id, "ra_review", "unsure")  # the tool's own admin user: not a member
    report = sync_queues(settings, admin, ("ra_review",), progress=False)
    assert len(report["refused"]) == 1 and "who is not in the team" in report["refused"][0]
    (row,) = _rows(settings, task_id)
    assert (row.actor, row.refused, row.role) == (settings.labelstudio_username, True, "RA")
    with session_scope(settings.database_url, write=False) as session:
        assert session.get(Task, task_id).status == "open"


def test_double_reads_wait_for_two_ras_then_agree_or_go_to_the_md_queue(team):
    import numpy as np

    from workflows.team_report import campaign_status

    settings, admin, people, clients = team
    both = settings.model_copy(update={"double_read_share": 1.0})  # every task read twice
    agree_id, agree_ls = _task(both, admin, "ra_review", ("predict",))
    split_id, split_ls = _task(both, admin, "ra_review", ("predict",))
    mask = _ref_mask(settings, agree_id)
    for task_id, ls_task_id in ((agree_id, agree_ls), (split_id, split_ls)):
        submit_annotation(clients["ra1"], ls_task_id, "ra_review", "accept", mask=_ref_mask(settings, task_id))
    first = sync_queues(both, admin, ("ra_review",), progress=False)
    assert first["awaiting_second_read"] == 2 and first["recorded"] == {}
    assert _rows(settings, agree_id) == [] and _rows(settings, split_id) == []

    submit_annotation(clients["ra2"], agree_ls, "ra_review", "accept", mask=mask)
    split_mask = _ref_mask(settings, split_id)
    shifted = np.roll(split_mask, split_mask.shape[1] // 6, axis=1)
    a, b = split_mask > 0, shifted > 0
    hand_dsc = 2 * int((a & b).sum()) / (int(a.sum()) + int(b.sum()))
    assert hand_dsc < 0.9
    submit_annotation(clients["ra2"], split_ls, "ra_review", "reject", mask=shifted)
    second = sync_queues(both, admin, ("ra_review",), progress=False)
    assert second["recorded"] == {"ra_review:accept": 1, "ra_review:double_read_agreed": 1,
                                  "ra_review:double_read_disagreed": 1}
    assert second["new_tasks"] == {"md_advice": 1} and second["awaiting_second_read"] == 0

    ra1, ra2 = people["ra1"][0], people["ra2"][0]
    agreed = _rows(settings, agree_id)
    assert [(r.actor, r.decision, r.valid, r.pair_dsc) for r in agreed] == [(ra1, "accept", True, 1.0),
                                                                             (ra2, "accept", True, 1.0)]
    split_rows = _rows(settings, split_id)
    assert [(r.actor, r.decision) for r in split_rows] == [(ra1, "accept"), (ra2, "reject")]
    assert all(r.pair_dsc == pytest.approx(hand_dsc, abs=1e-9) for r in split_rows)
    with session_scope(settings.database_url, write=False) as session:
        assert session.get(Image, agreed[0].image_id).state == "accepted"
        assert session.get(Image, split_rows[0].image_id).state == "unsure"
        md_task = session.scalars(select(Task).where(Task.queue == "md_advice",
                                                     Task.image_id == split_rows[0].image_id)).one()
        assert md_task.payload["ra_case"].startswith(f"two RAs disagree: {ra1} accept, {ra2} reject, masks DSC")
        report = campaign_status(session)
    # by hand: RA one [accept, accept], RA two [accept, reject]: observed 1/2, chance (2*1)/4 -> kappa 0
    assert report["agreement"]["pairs"] == 2 and report["agreement"]["kappa"] == 0.0
    assert report["agreement"]["dsc"] == pytest.approx((1.0 + hand_dsc) / 2, abs=1e-4)
    assert sync_queues(both, admin, ("ra_review",), progress=False)["recorded"] == {}  # nothing applied twice


def test_two_ras_each_decide_in_their_own_browser_and_the_decisions_carry_their_names(team, browser):
    """Each RA logs in with their own e-mail and first password (their own browser context, cookies
    apart), opens their task and accepts it; the sync attributes each decision to its RA."""
    import time

    settings, admin, people, _clients = team
    single = settings.model_copy(update={"double_read_share": 0.0})
    tasks = {who: _task(single, admin, "ra_review", ("predict",)) for who in ("ra1", "ra2")}
    with session_scope(settings.database_url, write=False) as session:
        project_id = session.get(Task, tasks["ra1"][0]).ls_project_id
    for who, (_task_id, ls_task_id) in tasks.items():
        email, _uid, password = people[who]
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{settings.labelstudio_base_url}/user/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url)
        page.goto(f"{settings.labelstudio_base_url}/projects/{project_id}/data?task={ls_task_id}")
        page.locator(".konvajs-content").first.wait_for()
        page.locator("label", has_text="accept").first.click()
        page.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(a.ls_task_id == ls_task_id
                                                       for a in admin.fetch_annotations(project_id)):
            time.sleep(0.5)
        context.close()
    report = sync_queues(single, admin, ("ra_review",), progress=False)
    assert report["recorded"].get("ra_review:accept") == 2, report
    for who, (task_id, _ls_task_id) in tasks.items():
        (row,) = _rows(settings, task_id)
        assert (row.actor, row.ls_user_id, row.role, row.decision, row.refused) == (people[who][0], people[who][1],
                                                                                    "RA", "accept", False)
        assert row.lead_time_s is not None and row.lead_time_s > 0


def test_the_simulated_team_works_with_its_own_accounts_and_one_scripted_ra_is_refused(team):
    from workflows.campaign import act
    from workflows.team_sim import PROFILES, ScriptedTeam, ensure_team

    settings, admin, _people, _clients = team
    with session_scope(settings.database_url) as session:
        members = ensure_team(session, settings, admin, seed=0)
    with session_scope(settings.database_url) as session:  # a second run finds them: nothing added twice
        again = ensure_team(session, settings, admin, seed=0)
    assert [m.ls_user_id for m in again] == [m.ls_user_id for m in members] and len(members) == len(PROFILES)
    assert len({m.ls_user_id for m in members}) == len(PROFILES)
    task_id, _ls_task_id = _task(settings, admin, "md_advice", ("predict", "doubt"), {"ra_case": "unsure"})
    with session_scope(settings.database_url) as session:
        open_tasks = list(session.scalars(select(Task.id).where(Task.queue == "md_advice", Task.status == "open")))
        acted = act(session, settings, admin, "md_advice", ScriptedTeam(members))
    assert task_id in open_tasks  # with the one the double reads sent, if that test ran first
    assert acted.acted == {"adjust": len(open_tasks) + 1}  # once the scripted RA first, then an MD on each
    report = sync_queues(settings, admin, ("md_advice",), progress=False)
    assert report["recorded"] == {"md_advice:adjust": len(open_tasks)} and len(report["refused"]) == 1
    rows = _rows(settings, min(open_tasks))
    assert [(r.actor, r.role, r.refused) for r in rows] == [("ra-ana@team.cxr-annotator.local", "RA", True),
                                                            ("md-dora@team.cxr-annotator.local", "MD", False)]
    with session_scope(settings.database_url, write=False) as session:
        assert {session.get(Task, t).status for t in open_tasks} == {"done"}
