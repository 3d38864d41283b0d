"""A crash at every named point (``ANNOTATOR_CRASH_AT``, annotator/crashpoint.py) of every protocol command
against a real Label Studio, driven through the CLI: the command dies there as under kill -9 (exit 137),
runs again without the variable, and then no decision is lost or doubled, no task is in Label Studio
twice and every image's history replays to its state. Nothing depends on how fast the machine is: each
crash happens at its point, not after some seconds."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from annotator.config import Settings, load_settings
from annotator.crashpoint import CRASH_POINTS, ENV_VAR, EXIT_CODE
from annotator.labelstudio.server import free_port
from db.engine import session_scope
from db.models import Decision, Image, Task

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_SEED, N_POOL = 13, 8  # the fewest seed images that give Stage I a train, val and test part; a small pool
N_IMAGES = N_SEED + N_POOL
ROUND_SIZE = 4
CALL_TIMEOUT_S = 3600  # Stage III trains six networks in one command: on two busy cores, many minutes


@pytest.fixture(scope="module")
def crash_campaign(tmp_path_factory, sample_data, campaign_tools):
    """An initialised, empty workspace next to the subset, and its own real Label Studio."""
    pytest.importorskip("label_studio", reason="needs the label-studio package")
    from annotator.labelstudio.server import start_server, stop_server
    from annotator.workspace import init_workspace

    make_subset, _ = campaign_tools
    root = tmp_path_factory.mktemp("crash")
    subset = make_subset(sample_data, root / "collection", n_seed=N_SEED, n_pool=N_POOL)
    ports = {"labelstudio_port": free_port(), "backend_port": free_port()}
    init_workspace(load_settings(workspace=root / "ws", **ports))  # writes the workspace's random secrets
    settings = load_settings(workspace=root / "ws", predict_backend="eager", **ports)  # read back: one token
    info = start_server(settings, timeout_s=300)
    try:
        yield settings, subset
    finally:
        stop_server(settings, process=info.process)


def check_store(settings: Settings, *, synced: bool = False) -> dict:
    """What must hold after any crash and after any re-run; with ``synced`` also that every annotation
    Label Studio holds for our tasks is recorded (none lost). Returns a few counts."""
    from annotator.labelstudio.client import LabelStudio
    from workflows.engine import replay_all
    from workflows.queues import latest_annotations

    ls = LabelStudio(settings)
    with session_scope(settings.database_url, write=False) as session:
        states = replay_all(session)  # raises when a history does not replay to its image's state
        keys = list(session.execute(select(Decision.ls_annotation_id, Decision.ls_updated_at)
                                    .where(Decision.valid.is_(True))).all())
        assert len(keys) == len(set(keys)), "a decision was recorded twice"
        tasks = list(session.scalars(select(Task)))
        projects = {t.ls_project_id for t in tasks if t.ls_project_id is not None}
        recorded = set(session.execute(select(Decision.ls_annotation_id, Decision.ls_updated_at)).all())
    ours = {(t.ls_project_id, t.ls_task_id) for t in tasks if t.ls_task_id is not None}
    for project_id in sorted(projects):
        seen: list[str] = [(t.get("data") or {}).get("annotator_key") for t in ls.iter_tasks(project_id)]
        assert len(seen) == len(set(seen)), f"project {project_id}: a task was pushed twice"
        if synced:
            for ls_task_id, a in latest_annotations(ls.fetch_annotations(project_id)).items():
                if (project_id, ls_task_id) in ours:
                    assert (a.ls_annotation_id, str(a.updated_at)) in recorded, f"annotation {a.ls_annotation_id} lost"
    return {"images": sum(states.values()), "states": states, "decisions": len(keys),
            "pushed": len(ours)}


def test_every_crash_point_loses_nothing_and_doubles_nothing(crash_campaign, campaign_tools, tmp_path):
    import dataclasses

    from annotator.segmentation.presets import PRESETS
    from workflows.stage1 import run_stage1

    settings, subset = crash_campaign
    _, cli = campaign_tools
    exercised: list[str] = []

    def step(*args: str, points: tuple[str, ...] = (), synced: bool = False) -> dict:
        """Crash ``args`` at each of ``points`` in turn, checking the store after each; then run it whole."""
        for point in points:
            crashed = cli(settings, *args, check=False, env={ENV_VAR: point}, timeout_s=CALL_TIMEOUT_S)
            assert crashed.returncode == EXIT_CODE and f"{ENV_VAR}={point}: crashing here" in crashed.stderr, (
                f"{point} was not reached by `{' '.join(args)}` (exit {crashed.returncode}):\n"
                f"{crashed.stdout[-2000:]}\n{crashed.stderr[-3000:]}")
            exercised.append(point)
            check_store(settings)
        cli(settings, *args, timeout_s=CALL_TIMEOUT_S)
        return check_store(settings, synced=synced)

    counts = step("data", "import", str(subset), "--layout", "manifest", points=("import.after_item",))
    assert counts["images"] == N_IMAGES
    with session_scope(settings.database_url) as session:
        stage1 = dataclasses.replace(PRESETS["tiny"], max_epochs=1, verify_fast_paths=False)
        run_stage1(session, settings, preset=stage1, variants=("unet-resnet18",), progress=False)

    counts = step("round", "next", "--size", str(ROUND_SIZE), points=("predict.after_shard", "push.after_import"))
    assert counts["pushed"] == ROUND_SIZE
    cli(settings, "simulate", "--queue", "ra_review")
    counts = step("round", "sync", points=("sync.after_decision",), synced=True)
    assert counts["decisions"] == ROUND_SIZE
    for _ in range(3):  # unsure -> MD advice -> RA adjust
        cli(settings, "md", "queue")
        cli(settings, "simulate", "--queue", "md_advice")
        cli(settings, "md", "queue", "--sync")
        cli(settings, "simulate", "--queue", "ra_adjust")
        step("round", "sync", synced=True)
    step("round", "close", "--preset", "smoke", points=("train.after_training", "close.after_publish"))

    counts = step("stage3", "run", "--preset", "smoke", points=("stage3.after_training", "predict.after_shard",
                                                                      "stage3.after_tasks"))
    assert counts["states"].get("candidates", 0) == N_POOL - ROUND_SIZE  # the rest of the pool
    cli(settings, "simulate", "--queue", "best_of_six")
    step("stage3", "sync", synced=True)
    step("stage3", "close", "--preset", "smoke", points=("stage3.close.after_training",))

    step("stage4", "sample", points=("stage4.after_sample",))
    cli(settings, "simulate", "--queue", "md_verify")
    counts = step("stage4", "sync", points=("stage4.after_splits",), synced=True)
    assert not {"sampled", "candidates", "predicted"} & set(counts["states"]), counts["states"]

    out = tmp_path / "export"
    step("export", str(out), points=("export.after_image",))
    with session_scope(settings.database_url, write=False) as session:
        assert session.scalar(select(func.count(Image.id))) == N_IMAGES
    exported = sorted(p.name for p in out.rglob("images/*.png"))
    assert exported and len(exported) == len(set(exported))  # each image once, in one split
    assert sorted(p.name for p in out.rglob("lung masks/*.png")) == exported
    assert set(exercised) == set(CRASH_POINTS), f"points never tried: {set(CRASH_POINTS) - set(exercised)}"
