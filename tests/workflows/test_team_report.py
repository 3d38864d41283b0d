"""Agreement of double reads and the team's report on a real SQLite workspace, against hand computations."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from annotator.cli.main import app
from db.engine import session_scope
from db.models import Decision, Image, Mask, Person, Round, Task
from workflows.agreement import cohen_kappa
from workflows.team_report import campaign_status

A = ["accept", "accept", "reject", "accept", "unsure"]
B = ["accept", "reject", "reject", "accept", "accept"]


def test_kappa_equals_the_hand_computation_and_sklearn():
    # observed 3/5; chance (3*3 + 1*2 + 1*0) / 25 = 11/25; kappa = (0.6 - 0.44) / 0.56
    assert cohen_kappa(A, B) == pytest.approx((0.6 - 0.44) / 0.56)
    sklearn = pytest.importorskip("sklearn.metrics")
    assert cohen_kappa(A, B) == pytest.approx(sklearn.cohen_kappa_score(A, B))
    assert cohen_kappa(["accept"] * 3, ["accept"] * 3) is None  # nothing to tell chance from agreement
    assert cohen_kappa(["accept", "reject"], ["reject", "accept"]) == pytest.approx(-1.0)
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError, match="same items: 2 vs 1"):
        cohen_kappa(["a", "b"], ["a"])


def _image(i: int) -> Image:
    return Image(sha256=f"{i:064x}", store_path=f"store/images/{i}.png", file_name=f"{i}.png", width=4, height=3,
                 bit_depth=8, resolution_bin="xs", contrast=0.1, snr=20.0, state="predicted")


@pytest.fixture
def team_workspace(workspace):
    """Two RAs (ids 11, 12) who both read five tasks of round 1, one MD (13); one refused RA decision in the
    MD queue; lead times 10..50 s; masks for three of RA one's decisions."""
    with session_scope(workspace.database_url) as s:
        s.add_all([Person(email="ra1@x.org", role="RA", ls_user_id=11),
                   Person(email="ra2@x.org", role="RA", ls_user_id=12), Person(email="md@x.org", role="MD", ls_user_id=13)])
        rnd = Round(stage=2, number=1, size=5, strategy="random")
        s.add(rnd)
        s.flush()
        for i, (a, b) in enumerate(zip(A, B, strict=True)):
            image = _image(i)
            s.add(image)
            s.flush()
            task = Task(image_id=image.id, round_id=rnd.id, queue="ra_review", ls_task_id=100 + i)
            s.add(task)
            s.flush()
            for uid, decision, dsc in ((11, a, 0.8 + i / 50), (12, b, 0.8 + i / 50)):
                row = Decision(image_id=image.id, round_id=rnd.id, task_id=task.id, actor=f"ra{uid - 10}@x.org",
                               role="RA", decision=decision, lead_time_s=10.0 * (i + 1), ls_user_id=uid,
                               ls_annotation_id=1000 + 10 * i + uid, ls_updated_at="t", pair_dsc=dsc)
                s.add(row)
                s.flush()
                if uid == 11 and i < 3:
                    s.add(Mask(image_id=image.id, kind="lung", version=1, origin="ra_accepted", store_path="m",
                               file_hash="h", decision_id=row.id))
        md_task = Task(image_id=1, round_id=rnd.id, queue="md_advice", ls_task_id=200)
        s.add(md_task)
        s.flush()
        s.add(Decision(image_id=1, round_id=rnd.id, task_id=md_task.id, actor="ra1@x.org", role="RA",
                       decision="accept", ls_user_id=11, ls_task_id=200, ls_annotation_id=5000, ls_updated_at="t", valid=False,
                       refused=True, message="made by ra1@x.org, an RA; queue md_advice takes MD decisions"))
    return workspace


def test_the_report_has_each_persons_work_agreement_and_refusals(team_workspace):
    with session_scope(team_workspace.database_url, write=False) as s:
        report = campaign_status(s)
    by_email = {p["email"]: p for p in report["people"]}
    ra1, ra2, md = by_email["ra1@x.org"], by_email["ra2@x.org"], by_email["md@x.org"]
    assert (ra1["email"], ra1["decisions"], ra1["total"]) == ("ra1@x.org", {"accept": 3, "reject": 1, "unsure": 1}, 5)
    assert ra1["median_lead_s"] == 30.0 and ra1["accepted_unedited_share"] == 0.6 and ra1["masks_made"] == 3
    assert (ra1["refused"], ra2["refused"]) == (1, 0)
    assert ra2["decisions"] == {"accept": 3, "reject": 2} and ra2["accepted_unedited_share"] == 0.6
    assert (md["email"], md["total"], md["median_lead_s"], md["accepted_unedited_share"]) == ("md@x.org", 0, None, None)
    assert report["open_tasks"] == {"md_advice": 1, "ra_review": 5}
    agreement = report["agreement"]
    assert agreement["pairs"] == 5 and agreement["kappa"] == pytest.approx(0.2857, abs=1e-4)
    assert agreement["dsc"] == pytest.approx(sum(0.8 + i / 50 for i in range(5)) / 5, abs=1e-4)
    assert agreement["ra_pairs"] == [{"ras": ["ra1@x.org", "ra2@x.org"], "pairs": 5, "kappa": agreement["kappa"],
                                      "dsc": agreement["dsc"]}]
    assert [r["round_id"] for r in agreement["rounds"]] == [1]
    assert report["refused_count"] == 1 and report["refused"][0]["queue"] == "md_advice"
    assert "queue md_advice takes MD decisions" in report["refused"][0]["reason"]


def test_campaign_status_json_and_png(team_workspace, tmp_path):
    png = tmp_path / "team.png"
    result = CliRunner().invoke(app, ["--workspace", str(team_workspace.workspace_path), "campaign", "status", "--json",
                                      "--png", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for person in report["people"]:
        assert {"email", "role", "decisions", "median_lead_s", "accepted_unedited_share"} <= set(person)
    assert set(report["agreement"]) >= {"kappa", "dsc"} and report["refused_count"] == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = CliRunner().invoke(app, ["--workspace", str(team_workspace.workspace_path), "campaign", "status",
                                    "--png", str(png)])
    assert text.exit_code == 0, text.output
    assert "refused: image 1 (md_advice, task 200) by ra1@x.org" in text.output


def test_stage_iv_verdicts_are_counted_per_author_of_the_mask_shown(team_workspace):
    with session_scope(team_workspace.database_url) as s:
        rnd = Round(stage=4, number=1, size=3, strategy="stratified")
        s.add(rnd)
        s.flush()
        verdicts = [("ra1@x.org", "verified"), ("ra1@x.org", "corrected"), ("ra2@x.org", "verified"),
                    ("ra1@x.org", "verified")]
        for i, (author, verdict) in enumerate(verdicts):
            image = _image(50 + i)
            s.add(image)
            s.flush()
            shown = Mask(image_id=image.id, kind="lung", version=1, origin="ra_edited", store_path="m", file_hash="h",
                         author=author)
            s.add(shown)
            s.flush()
            task = Task(image_id=image.id, round_id=rnd.id, queue="md_verify", ls_task_id=300 + i,
                        payload={"mask_id": shown.id})
            s.add(task)
            s.flush()
            s.add(Decision(image_id=image.id, round_id=rnd.id, task_id=task.id, actor="md@x.org", role="MD",
                           decision=verdict, ls_user_id=13, ls_annotation_id=6000 + i, ls_updated_at="t"))
    with session_scope(team_workspace.database_url, write=False) as s:
        report = campaign_status(s)
    assert report["md_verdicts"] == [
        {"author": "ra1@x.org", "judged": 3, "verified": 2, "corrected": 1, "verified_share": round(2 / 3, 4)},
        {"author": "ra2@x.org", "judged": 1, "verified": 1, "corrected": 0, "verified_share": 1.0}]
    from workflows.team_report import team_markdown

    assert "| ra1@x.org | 3 | 2 | 1 | 0.667 |" in team_markdown(report)
