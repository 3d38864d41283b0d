"""Stage I end to end on real imported Montgomery/Shenzhen images, through the service and the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotator.config import load_settings
from annotator.errors import TrainingError, UnknownNameError
from db.engine import session_scope
from db.models import Model, SplitMember
from workflows.stage1 import run_stage1, split_of

N_PER_SET = 18


@pytest.fixture(scope="module", autouse=True)
def _torch_threads():
    from annotator.segmentation.runtime import configure_threads

    configure_threads(0)


@pytest.fixture(scope="module")
def seed_workspace(tmp_path_factory, sample_data):
    """A workspace with 18 Montgomery + 18 Shenzhen images and their seed lung masks, imported."""
    from annotator.ingest.importer import import_items
    from annotator.ingest.layouts import ImportItem, read_manifest
    from annotator.workspace import init_workspace

    settings = load_settings(workspace=tmp_path_factory.mktemp("stage1") / "ws")
    init_workspace(settings)
    items, taken = [], {"Montgomery": 0, "Shenzhen": 0}
    for item in read_manifest(sample_data):
        if isinstance(item, ImportItem) and item.dataset in taken and taken[item.dataset] < N_PER_SET:
            taken[item.dataset] += 1
            items.append(item)
    with session_scope(settings.database_url) as session:
        summary = import_items(session, settings, items, "manifest")
    assert summary.ok, summary.failures
    return settings


def _tiny(epochs: int = 2):
    from annotator.segmentation.presets import PRESETS

    return dataclasses.replace(PRESETS["tiny"], max_epochs=epochs, min_steps_per_epoch=1, batch_size=8,
                               verify_fast_paths=False)


def test_split_is_fixed_by_content():
    assert split_of("a" * 64) == split_of("a" * 64)
    shares = [split_of(f"{i:064x}") for i in range(2000)]
    assert 0.12 < shares.count("test") / 2000 < 0.18 and 0.07 < shares.count("val") / 2000 < 0.13


@pytest.mark.slow
def test_stage1_trains_registers_and_marks_the_best(seed_workspace):
    settings = seed_workspace
    with session_scope(settings.database_url) as session:
        result = run_stage1(session, settings, preset=_tiny(), progress=False,
                            variants=("unet-resnet18", "fpn-resnet18"))
    assert not result.skipped and sum(result.counts.values()) == 2 * N_PER_SET
    assert all(result.counts[k] > 0 for k in ("train", "val", "test"))
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Model).where(Model.stage == "stage1")).all()
        assert sorted(r.spec for r in rows) == ["fpn-resnet18", "unet-resnet18"]
        working = [r for r in rows if r.is_working]
        assert len(working) == 1
        assert working[0].metrics["val_dsc"] == max(r.metrics["val_dsc"] for r in rows)
        for row in rows:
            assert (settings.workspace_path / row.checkpoint_path).is_file()
            assert row.model_version.startswith(row.spec + "-") and row.preset == "tiny"
            assert row.metrics["test"]["n"] == result.counts["test"] and 0 <= row.metrics["test_dsc"] <= 1
            assert row.training_snapshot["counts"] == result.counts
        members = session.scalar(select(func.count()).select_from(SplitMember).where(SplitMember.name == "stage1"))
        assert members == 2 * N_PER_SET
    assert result.working.model_version == working[0].model_version

    # done: a second run does nothing
    with session_scope(settings.database_url) as session:
        again = run_stage1(session, settings, preset=_tiny(), progress=False, variants=("unet-resnet18",))
        assert again.skipped and {v.model_version for v in again.variants} == {r.model_version for r in rows}
        assert session.scalar(select(func.count()).select_from(Model)) == 2


def test_cli_skips_when_done_and_evaluates_the_working_network(seed_workspace):
    from annotator.cli.main import app

    runner = CliRunner()
    ws = str(seed_workspace.workspace_path)
    done = runner.invoke(app, ["-w", ws, "stage1", "run", "--preset", "tiny"])
    assert done.exit_code == 0, done.output
    assert "already done" in done.output
    evaluated = runner.invoke(app, ["-w", ws, "model", "evaluate", "--model", "working", "--backend", "eager",
                                    "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.output)
    with session_scope(seed_workspace.database_url) as session:
        working = session.scalar(select(Model).where(Model.is_working.is_(True)))
        n_test = session.scalar(select(func.count()).select_from(SplitMember).where(SplitMember.split == "test"))
    assert scores["n"] == n_test and scores["model_version"] == working.model_version
    assert f"working network: {working.model_version}" in done.output
    assert scores["dsc"] == pytest.approx(working.metrics["test"]["dsc"], abs=1e-9)
    assert 0 <= scores["iou"] <= scores["dsc"] <= 1
    unknown = runner.invoke(app, ["-w", ws, "model", "evaluate", "--model", "nope-123"])
    assert unknown.exit_code == 1 and "unknown model 'nope-123'" in unknown.output


@pytest.mark.slow
def test_force_trains_again_and_moves_the_working_mark(seed_workspace):
    settings = seed_workspace
    with session_scope(settings.database_url) as session:
        result = run_stage1(session, settings, preset=_tiny(1), force=True, progress=False,
                            variants=("unet-resnet18",))
    assert not result.skipped and result.working.spec == "unet-resnet18"
    with session_scope(settings.database_url) as session:
        working = session.scalars(select(Model).where(Model.is_working.is_(True))).all()
        assert [w.model_version for w in working] == [result.working.model_version]


@pytest.mark.slow
def test_stage3_trains_the_working_architecture_on_from_its_weights(seed_workspace):
    """Of the six, the working network's architecture fine-tunes the working weights; five start afresh."""
    from workflows.stage2 import mark_seed_images
    from workflows.stage3 import NETWORKS, run_stage3, stage3_round

    settings = seed_workspace
    with session_scope(settings.database_url) as session:
        run_stage1(session, settings, preset=_tiny(1), progress=False, variants=("unet-resnet18",))  # done: skips
        working = session.scalar(select(Model).where(Model.is_working.is_(True)))
        assert working.spec in NETWORKS  # Stage I here trains U-Net-ResNet18 and FPN-ResNet18
        assert mark_seed_images(session) > 0  # the seed set is the repository the six train on
        report = run_stage3(session, settings, _tiny(1), progress=False)
        summary = stage3_round(session).summary
        assert summary["working_before"] == working.model_version
        assert summary["warm_started"] == report.warm_started == {working.spec: working.model_version}
        for name, version in zip(report.networks, report.model_versions, strict=True):
            row = session.scalar(select(Model).where(Model.model_version == version))
            assert row.spec == name
            if name == working.spec:  # fine-tuned, or the working network itself when no epoch beat it
                assert working.model_version in (row.model_version, row.parent_version)
            else:
                assert row.parent_version is None and row.training_snapshot["init_from"] is None
        assert session.scalar(select(Model).where(Model.is_working.is_(True))).model_version == working.model_version


@pytest.mark.slow
def test_stage3_predicts_in_batches_what_each_network_predicts_per_image(tmp_path_factory, sample_data):
    """Stage III's six predictions per pool image, made in batches of images, are each network's own
    prediction of that image alone (up to float rounding); the rows record the device they trained on."""
    import numpy as np

    from annotator.imaging.io import read_image, read_mask
    from annotator.ingest.importer import import_items
    from annotator.ingest.layouts import ImportItem, read_manifest
    from annotator.model_registry import checkpoint_file
    from annotator.segmentation.predict import Predictor
    from annotator.workspace import init_workspace
    from db.models import Image, Mask, Task
    from workflows.stage2 import mark_seed_images
    from workflows.stage3 import PREDICT_BATCH, run_stage3

    settings = load_settings(workspace=tmp_path_factory.mktemp("stage3") / "ws")
    init_workspace(settings)
    pool_set = "Kermany2018 chest_xray (pediatric)"  # no masks: pool images
    limits = {"Montgomery": N_PER_SET, "Shenzhen": N_PER_SET, pool_set: PREDICT_BATCH + 3}  # a full batch, a partial one
    taken = dict.fromkeys(limits, 0)
    items = []
    for item in read_manifest(sample_data):
        if isinstance(item, ImportItem) and item.dataset in limits and taken[item.dataset] < limits[item.dataset]:
            taken[item.dataset] += 1
            items.append(item)
    with session_scope(settings.database_url) as session:
        assert import_items(session, settings, items, "manifest").ok
    with session_scope(settings.database_url) as session:
        run_stage1(session, settings, preset=_tiny(1), progress=False, variants=("unet-resnet18",))
        mark_seed_images(session)
        report = run_stage3(session, settings, _tiny(1), progress=False)
        assert report.candidates == PREDICT_BATCH + 3
        cache = settings.workspace_path / "cache" / "predictions"
        assert len(list(cache.glob("stage3-*/shard-*.npz"))) == 1  # 19 images: one shard, until the commit
        rows = {v: session.scalar(select(Model).where(Model.model_version == v)) for v in report.model_versions}
        assert {r.metrics["device"] for r in rows.values()} == {"cpu"}  # auto on a machine without CUDA
        assert {r.metrics["world_size"] for r in rows.values()} == {1}
        tasks = session.scalars(select(Task).where(Task.round_id == report.round_id).order_by(Task.id)).all()
        lung_shares = []
        for task in (tasks[0], tasks[-1]):  # one of the full batch, one of the partial batch
            image = session.get(Image, task.image_id)
            gray = read_image(settings.workspace_path / image.store_path)
            for mask_id, version in zip(task.payload["mask_ids"], task.payload["model_versions"], strict=True):
                alone = Predictor.from_checkpoint(checkpoint_file(settings.workspace_path, rows[version]),
                                                  device=settings.device).predict([gray])[0]
                stored = read_mask(settings.workspace_path / session.get(Mask, mask_id).store_path, gray.shape)
                # equal up to float rounding: a batch's convolutions sum in another order (measured: <= 7e-5 in
                # probability, a pixel or two of 60,000 on the threshold)
                differ = float(np.mean((stored > 0) != (alone > 0)))
                assert differ <= 1e-3, (task.image_id, version, differ)
                lung_shares.append(float(np.mean(alone > 0)))
        assert len(lung_shares) == 12 and max(lung_shares) > 0.3  # real masks among them (one epoch: some empty)
    # the prediction's shards were the cache of a run not yet committed: the commit dropped them
    assert cache.is_dir() and not list(cache.glob("stage3-*"))


def test_no_seed_masks_and_bad_names_are_clear_errors(workspace):
    with session_scope(workspace.database_url) as session:
        with pytest.raises(TrainingError, match="no seed lung masks of Montgomery or Shenzhen"):
            run_stage1(session, workspace, preset="tiny", progress=False)
        with pytest.raises(UnknownNameError, match=r"unknown training preset .*; valid: .*paper, quick, smoke, tiny"):
            run_stage1(session, workspace, preset="fastest", progress=False)
        with pytest.raises(UnknownNameError, match="unet-resnet18"):
            run_stage1(session, workspace, preset="tiny", progress=False, variants=("unet-vgg",))
        assert session.scalar(select(func.count()).select_from(Model)) == 0


def test_model_list_prints_the_fifteen_with_parameters():
    from annotator.cli.main import app

    out = CliRunner().invoke(app, ["model", "list", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert len(rows) == 15
    assert rows["unet-resnet18"]["params_m"] == 14.32 and rows["fpn-densenet121"]["params_m"] == 9.29
