"""The protocol end to end against a real Label Studio, driven through the CLI as a user would: every
decision recorded once, none lost, no task pushed twice, an edit wins. (A crash at each named point of
each command, then a re-run: test_crash.py.)"""

from __future__ import annotations

import csv
import json
import time

import pytest
from sqlalchemy import func, select

from annotator.config import Settings, load_settings
from annotator.labelstudio.server import free_port
from db.engine import session_scope
from db.models import Decision, Image, Model, Round, SplitMember, Task

pytestmark = pytest.mark.integration

N_SEED = 36  # Montgomery/Shenzhen images with manual masks: Stage I's seed set
N_POOL = 24  # ieee8023 images with manual masks: the pool the simulated RAs judge


@pytest.fixture(scope="module")
def cli(campaign_tools):
    return campaign_tools[1]


@pytest.fixture(scope="module")
def make_subset(campaign_tools):
    return campaign_tools[0]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, sample_data, make_subset, cli):
    """A workspace with the subset imported, a tiny Stage I network and its own real Label Studio."""
    pytest.importorskip("label_studio", reason="needs the label-studio package")
    from annotator.labelstudio.server import start_server, stop_server
    from workflows.stage1 import run_stage1

    root = tmp_path_factory.mktemp("campaign")
    subset = make_subset(sample_data, root / "collection")
    ports = {"labelstudio_port": free_port(), "backend_port": free_port()}
    settings = load_settings(workspace=root / "ws", predict_backend="eager", **ports)
    cli(settings, "data", "import", str(subset), "--layout", "manifest", "--json")
    # the import made the workspace and its random secrets: read them, as every later command does
    settings = load_settings(workspace=root / "ws", predict_backend="eager", **ports)
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count(Image.id))) == N_SEED + N_POOL
    with session_scope(settings.database_url) as session:
        run_stage1(session, settings, preset="tiny", variants=("unet-resnet18",), progress=False)
    info = start_server(settings, timeout_s=300)
    try:
        yield settings
    finally:
        stop_server(settings, process=info.process)


def _counts(settings: Settings) -> dict:
    with session_scope(settings.database_url) as session:
        decisions = list(session.scalars(select(Decision).where(Decision.valid.is_(True))))
        return {
            "tasks": session.scalar(select(func.count(Task.id))) or 0,
            "pushed": session.scalar(select(func.count(Task.id)).where(Task.ls_task_id.is_not(None))) or 0,
            "decisions": len(decisions),
            "distinct_annotations": len({(d.ls_annotation_id, d.ls_updated_at) for d in decisions}),
            "states": dict(session.execute(select(Image.state, func.count()).group_by(Image.state)).all()),
        }


def _ls_task_count(settings: Settings, queue: str) -> int:
    from annotator.labelstudio.client import LabelStudio

    ls = LabelStudio(settings)
    return len(ls.list_task_keys(ls.ensure_project(queue)))


def test_round_records_every_decision_once(campaign, cli):
    settings = campaign
    first = cli(settings, "round", "next", "--size", "10", "--json")
    assert '"size": 10' in first.stdout
    assert _counts(settings)["pushed"] == 10 and _ls_task_count(settings, "ra_review") == 10
    again = cli(settings, "round", "next", "--json")  # the round is open: resumes, pushes nothing twice
    assert '"resumed": true' in again.stdout and _ls_task_count(settings, "ra_review") == 10

    refused = cli(settings, "round", "close", "--preset", "smoke", check=False)
    assert refused.returncode == 1 and "10 image(s) are still undecided" in refused.stderr

    cli(settings, "simulate", "--queue", "ra_review")
    cli(settings, "round", "sync")
    counts = _counts(settings)
    assert counts["decisions"] == counts["distinct_annotations"] == 10
    resync = cli(settings, "round", "sync", "--json")
    assert '"skipped": 10' in resync.stdout and _counts(settings)["decisions"] == 10

    for _ in range(3):  # unsure -> MD advice -> RA adjust
        cli(settings, "md", "queue")
        cli(settings, "simulate", "--queue", "md_advice")
        cli(settings, "md", "queue", "--sync")
        cli(settings, "simulate", "--queue", "ra_adjust")
        cli(settings, "round", "sync")
    states = _counts(settings)["states"]
    assert not {"predicted", "rejected", "unsure", "md_advised"} & set(states), states
    assert sum(states.get(s, 0) for s in ("accepted", "corrected", "adjusted", "excluded")) == 10

    with session_scope(settings.database_url) as session:
        working_before = session.scalar(select(Model).where(Model.is_working.is_(True))).model_version
    cli(settings, "round", "close", "--preset", "smoke", "--json")
    again = cli(settings, "round", "close", "--preset", "smoke", check=False)
    assert again.returncode == 1 and "no open round" in again.stderr
    with session_scope(settings.database_url) as session:
        rounds = list(session.scalars(select(Round).where(Round.stage == 2)))
        assert [r.status for r in rounds] == ["closed"]
        summary = rounds[0].summary
        working = session.scalar(select(Model).where(Model.is_working.is_(True)))
        assert 0.0 <= summary["val_dsc"] <= 1.0 and summary["reviews"] == 10
        # the first close reserved a share of the verified images as the collection part of the validation set
        reserved = set(session.scalars(select(SplitMember.image_id).where(SplitMember.name == "validation")))
        assert len(reserved) == summary["val_collection_images"] >= 1
        assert 0.0 <= summary["val_dsc_before"] <= 1.0 and summary["val_images"] > len(reserved)
        assert working.model_version == summary["new_model_version"]
        if summary["kept_previous"]:  # no fine-tuned epoch beat it on the fixed validation set
            assert working.model_version == working_before and summary["val_dsc"] == summary["val_dsc_before"]
        else:
            assert working.model_version != working_before
            assert working.parent_version == working_before and working.stage == "round-1"
            assert reserved <= set(working.training_snapshot["val_image_ids"])
            assert not reserved & set(working.training_snapshot["train_image_ids"])
        assert sum(summary["decisions"].get(k, 0) for k in ("accept", "reject", "unsure", "exclude")) == 10
        from workflows.engine import replay_all

        assert sum(replay_all(session).values()) == N_SEED + N_POOL


def test_an_annotation_edited_after_sync_wins_and_is_recorded(campaign, cli):
    from annotator.labelstudio.acting import annotation_result
    from annotator.labelstudio.client import LabelStudio
    from workflows.engine import history

    settings = campaign
    cli(settings, "round", "next", "--size", "4")
    cli(settings, "simulate", "--queue", "ra_review")
    cli(settings, "round", "sync")
    with session_scope(settings.database_url) as session:
        decision = session.scalar(select(Decision).join(Task, Task.id == Decision.task_id)
                                  .where(Task.queue == "ra_review", Decision.decision.in_(("accept", "reject")))
                                  .order_by(Decision.id.desc()).limit(1))
        image_id, annotation_id, old = decision.image_id, decision.ls_annotation_id, decision.decision
        image = session.get(Image, image_id)
        from annotator.imaging.io import read_image

        pixels = read_image(settings.workspace_path / image.store_path)
    new = "exclude"
    time.sleep(1.1)  # Label Studio's updated_at has second resolution in some exports
    LabelStudio(settings).request("PATCH", f"/api/annotations/{annotation_id}",
                                  json={"result": annotation_result("ra_review", new, text="wrong patient")})
    cli(settings, "round", "sync")
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Decision).where(Decision.ls_annotation_id == annotation_id)
                                    .order_by(Decision.id)))
        assert [r.decision for r in rows] == [old, new]
        assert session.get(Image, image_id).state == "excluded"
        events = [t.event for t in history(session, image_id)]
        assert events[-2:] == ["reopen", "exclude"]
        assert pixels.shape == (session.get(Image, image_id).height, session.get(Image, image_id).width)


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports(tmp_path, sample_data, make_subset, cli):
    pytest.importorskip("label_studio", reason="needs the label-studio package")
    subset = make_subset(sample_data, tmp_path / "collection")
    settings = load_settings(workspace=tmp_path / "ws", labelstudio_port=free_port(), backend_port=free_port(),
                             predict_backend="eager")
    run = cli(settings, "demo", "--round-size", "6", "--target", "12", "--preset", "smoke", "--no-serve",
              env={"ANNOTATOR_SAMPLE_DATA": str(subset)}, timeout_s=2700)
    out = run.stdout
    for step in ("== Stage I", "== Stage II", "== Stage III", "== Stage IV", "== export", "== report"):
        assert step in out, out[-3000:]

    report_dir = settings.reports_path / "campaign"
    rows = list(csv.DictReader((report_dir / "campaign.csv").open()))
    stage2 = [r for r in rows if r["stage"] == "2"]
    assert len(stage2) >= 2 and all(0 <= float(r["val_dsc"]) <= 1 for r in stage2)
    assert all(0 <= float(r["accepted_unedited_share"]) <= 1 for r in stage2)
    assert stage2[0]["source"] == "pool"
    assert {r["source"] for r in stage2} <= {"pool", "Stage III denied", "pool + Stage III denied"}
    assert (report_dir / "campaign.png").stat().st_size > 10_000

    with session_scope(settings.database_url) as session:
        from workflows.engine import replay_all

        final = replay_all(session)
        assert sum(final.values()) == N_SEED + N_POOL
        assert not {"predicted", "rejected", "unsure", "md_advised", "candidates", "sampled"} & set(final), final
        made = sum(final.get(s, 0) for s in ("accepted", "corrected", "adjusted"))
        assert made >= 12  # the target, reached in Stage II
        assert final.get("verified", 0) + final.get("md_corrected", 0) > 0
        rounds = list(session.scalars(select(Round).order_by(Round.id)))
        assert {r.stage for r in rounds} == {2, 3, 4} and all(r.status == "closed" for r in rounds)
        # Stage III: the working network's architecture went on from its weights, the other five from scratch
        stage3 = next(r for r in rounds if r.stage == 3)
        warm = stage3.summary["warm_started"]
        before = session.scalar(select(Model).where(Model.model_version == stage3.summary["working_before"]))
        assert warm == ({before.spec: before.model_version} if before.spec in stage3.summary["networks"] else {})
        for name, version in zip(stage3.summary["networks"], stage3.summary["model_versions"], strict=True):
            row = session.scalar(select(Model).where(Model.model_version == version))
            assert row.spec == name
            if name in warm:
                assert warm[name] in (row.model_version, row.parent_version)
            else:
                assert row.parent_version is None
        tests = session.scalar(select(func.count(SplitMember.id)).where(SplitMember.name == "protocol",
                                                                        SplitMember.split == "test"))
        assert tests == final.get("verified", 0) + final.get("md_corrected", 0)
        valid = list(session.scalars(select(Decision).where(Decision.valid.is_(True))))
        keys = [(d.ls_annotation_id, d.ls_updated_at) for d in valid]
        assert len(keys) == len(set(keys))  # no decision recorded twice
        assert session.scalar(select(func.count(Image.id))) == N_SEED + N_POOL

    export = settings.exports_path / "covid-qu-ex"
    lineage = list(csv.DictReader((export / "lineage.csv").open()))
    assert {r["origin"] for r in lineage} >= {"seed", "model", "md_verified"}
    assert any((export / "Lung Segmentation Data" / "Test").rglob("*.png"))

    again = cli(settings, "demo", "--round-size", "6", "--target", "12", "--preset", "smoke", "--no-serve",
                env={"ANNOTATOR_SAMPLE_DATA": str(subset)})  # a second run finds everything done
    assert "0 images added" in again.stdout
    with session_scope(settings.database_url) as session:
        assert len(list(session.scalars(select(Decision).where(Decision.valid.is_(True))))) == len(valid)
    status = json.loads(cli(settings, "status", "--json").stdout)
    assert status["images"] == N_SEED + N_POOL


@pytest.fixture(scope="module")
def small_campaign(tmp_path_factory, sample_data, make_subset):
    """13 seed images (the fewest that give Stage I a train, val and test part), 4 pool images, a one-epoch
    Stage I network and its own Label Studio: small enough for Stage III's six networks to train in minutes."""
    pytest.importorskip("label_studio", reason="needs the label-studio package")
    import dataclasses

    from annotator.ingest.importer import import_collection
    from annotator.labelstudio.server import start_server, stop_server
    from annotator.segmentation.presets import PRESETS
    from annotator.workspace import init_workspace
    from workflows.stage1 import run_stage1

    root = tmp_path_factory.mktemp("small")
    subset = make_subset(sample_data, root / "collection", n_seed=13, n_pool=4)
    ports = {"labelstudio_port": free_port(), "backend_port": free_port()}
    init_workspace(load_settings(workspace=root / "ws", **ports))  # writes the workspace's random secrets
    settings = load_settings(workspace=root / "ws", predict_backend="eager", **ports)  # ... read back here,
    with session_scope(settings.database_url) as session:  # so our Label Studio and the CLI share one token
        assert import_collection(session, settings, subset, "manifest").ok
    with session_scope(settings.database_url) as session:
        run_stage1(session, settings, preset=dataclasses.replace(PRESETS["tiny"], max_epochs=1, verify_fast_paths=False),
                   variants=("unet-resnet18",), progress=False)
    info = start_server(settings, timeout_s=300)
    try:
        yield settings
    finally:
        stop_server(settings, process=info.process)


@pytest.mark.slow
def test_round_next_and_stage3_run_write_progress_lines_to_a_log_file(small_campaign, tmp_path, cli):
    """Output to a file (no terminal, as under nohup or CI): the long steps write plain progress lines."""
    settings = small_campaign
    text = cli(settings, "round", "next", "--size", "2", log=tmp_path / "round-next.log").stdout
    for line in ("[progress] round 1: pre-labelling: 0/2 images (0%)",
                 "[progress] round 1: pre-labelling: 2/2 images (100%)",
                 "[progress] pushing ra_review tasks: 0/2 tasks (0%)",
                 "[progress] pushing ra_review tasks: 2/2 tasks (100%)"):
        assert line in text, text
    assert "round started" in text and "size: 2" in text

    text = cli(settings, "stage3", "run", "--preset", "smoke", log=tmp_path / "stage3-run.log").stdout
    from workflows.stage3 import NETWORKS

    expected = ["[progress] Stage III: training six networks: 6/6 networks (100%)",
                "[progress] Stage III: six predictions per image: 2/2 images (100%)",
                "[progress] pushing best_of_six tasks: 2/2 tasks (100%)"]
    expected += [f"[progress] training {name} (smoke): 2/2 epochs (100%)" for name in NETWORKS]
    for line in expected:
        assert line in text, text
    lines = [x for x in text.splitlines() if x.startswith("[progress] Stage III: training six networks: ")]
    assert {x.split(": ")[2].split(" ")[0] for x in lines} == {f"{k}/6" for k in range(7)}  # a line a network
    assert "Stage III" in text and "candidates: 2" in text
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count(Task.id)).where(Task.queue == "best_of_six",
                                                                 Task.ls_task_id.is_not(None))) == 2
