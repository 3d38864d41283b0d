"""The model registry on a real SQLite workspace with a real tiny trained network: publish copies the
checkpoint and its verified ONNX graph, registers the row (once) and moves the working mark; the ML
backend's source and `resolve_checkpoint` find the same working network; `model train` publishes too."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotator.errors import ModelError
from annotator.imaging.io import file_sha256
from annotator.ingest.importer import import_items
from annotator.ingest.layouts import ImportItem, read_manifest
from annotator.model_registry import (
    checkpoint_file, mark_working, prune, publish, register, resolve_checkpoint, working_model,
)
from db.engine import session_scope
from db.models import Model, Round
from ml_backend.holder import CheckpointRef, WorkingModelSource
from workflows.stage1 import split_of


def test_publish_registers_once_and_moves_the_working_mark(tiny_run, workspace):
    result, _ = tiny_run
    settings = workspace
    onnx = result.checkpoint_path.with_name(f"{result.model_version}.onnx")
    assert onnx.is_file()  # the tiny preset verifies the fast paths, so training exported it
    with session_scope(settings.database_url) as session:
        row = publish(session, settings, result, spec="unet-resnet18", preset="tiny", snapshot={"n": 2},
                      stage="manual")
        path = settings.models_path / f"{result.model_version}.pt"
        assert row.checkpoint_path == f"models/{result.model_version}.pt" and not row.is_working
        assert path.read_bytes() == result.checkpoint_path.read_bytes()
        assert path.samefile(result.checkpoint_path) and path.stat().st_nlink == 2  # linked, not copied
        assert not (result.checkpoint_path.parent / "last.pt").exists()  # published: no resume state kept
        assert (result.checkpoint_path.parent / "finished.json").is_file()
        assert path.with_suffix(".onnx").read_bytes() == onnx.read_bytes()
        assert (row.metrics, row.training_snapshot, row.stage) == (result.metrics, {"n": 2}, "manual")
        assert working_model(session) is None
        again = publish(session, settings, result, spec="unet-resnet18", preset="tiny", snapshot={"n": 2},
                        stage="round-1", make_working=True)
        assert again.id == row.id and again.stage == "round-1" and again.is_working
        assert session.scalar(select(func.count(Model.id))) == 1
        other = register(session, model_version="unet-resnet18-0000000000", spec="unet-resnet18", preset="tiny",
                         checkpoint_path=str(result.checkpoint_path), metrics={}, snapshot={}, stage="manual")
        assert working_model(session).id == row.id
        mark_working(session, other)
        assert working_model(session).id == other.id and not row.is_working
        assert resolve_checkpoint(session, settings, "working") == result.checkpoint_path  # an absolute path
        assert resolve_checkpoint(session, settings, row.model_version) == path
        assert resolve_checkpoint(None, settings, str(path)) == path
        with pytest.raises(ModelError, match=f"unknown model 'nope'.*{row.model_version}"):
            resolve_checkpoint(session, settings, "nope")
        mark_working(session, row)
    source = WorkingModelSource(settings.database_url, settings.workspace_path)
    assert source.current() == CheckpointRef(result.model_version, path)


def test_publish_refuses_a_missing_checkpoint(tiny_run, workspace, tmp_path):
    result, _ = tiny_run
    gone = type(result)(tmp_path / "gone.pt", "unet-resnet18-gone", {})
    with session_scope(workspace.database_url) as session:
        with pytest.raises(ModelError, match="cannot publish unet-resnet18-gone: .*gone.pt is not a file"):
            publish(session, workspace, gone, spec="unet-resnet18", preset="tiny", snapshot={}, stage="manual")
        assert session.scalar(select(func.count(Model.id))) == 0


@pytest.mark.slow
def test_model_train_publishes_the_checkpoint_and_its_onnx_graph(workspace, sample_data):
    from annotator.cli.main import app

    items, want = [], {"train": 3, "val": 1}
    for item in read_manifest(sample_data):
        if isinstance(item, ImportItem) and item.dataset == "Montgomery" and item.lung_mask_path:
            part = split_of(file_sha256(item.image_path))
            if want.get(part, 0) > 0:
                want[part] -= 1
                items.append(item)
    with session_scope(workspace.database_url) as session:
        assert import_items(session, workspace, items, "manifest").ok
    out = CliRunner().invoke(app, ["-w", str(workspace.workspace_path), "model", "train", "unet-resnet18",
                                   "--preset", "tiny", "--dataset", "Montgomery"])
    assert out.exit_code == 0, out.output
    with session_scope(workspace.database_url) as session:
        (row,) = session.scalars(select(Model)).all()
        assert row.stage == "manual" and not row.is_working and row.training_snapshot["mask_ids"]
        path = checkpoint_file(workspace.workspace_path, row)
        assert path == workspace.models_path / f"{row.model_version}.pt" and path.is_file()
        assert path.with_suffix(".onnx").is_file()
    assert f"registered {row.model_version}" in out.output


def test_prune_drops_the_files_of_unnamed_old_versions_and_keeps_their_rows(workspace):
    settings = workspace
    settings.models_path.mkdir(parents=True, exist_ok=True)
    with session_scope(settings.database_url) as session:
        rows = []
        for i in range(6):
            version = f"unet-resnet18-{i:010d}"
            (settings.models_path / f"{version}.pt").write_bytes(b"w" * 3000)
            (settings.models_path / f"{version}.onnx").write_bytes(b"g" * 1000)
            rows.append(register(session, model_version=version, spec="unet-resnet18", preset="tiny",
                                 checkpoint_path=f"models/{version}.pt", metrics={}, snapshot={}, stage="manual"))
        mark_working(session, rows[0])  # the oldest, but working
        session.add(Round(stage=2, number=1, size=1, strategy="random", model_version=rows[1].model_version))
        report = settings.reports_path / "recognition-quick"
        report.mkdir(parents=True)
        (report / "results.json").write_text(json.dumps({"lung": {"model_version": rows[2].model_version}}))
        session.flush()
        dry = prune(session, settings, keep=2, dry_run=True)
        assert (dry["pruned"], dry["kept"], dry["freed_bytes"]) == ([rows[3].model_version], 5, 4000)
        assert (settings.models_path / f"{rows[3].model_version}.pt").is_file() and rows[3].pruned_at is None
        done = prune(session, settings, keep=2)
        assert done["pruned"] == [rows[3].model_version] and rows[3].pruned_at is not None
        left = sorted(p.name for p in settings.models_path.glob("*.pt"))
        assert left == sorted(f"{r.model_version}.pt" for r in rows if r is not rows[3])
        assert not (settings.models_path / f"{rows[3].model_version}.onnx").exists()
        with pytest.raises(ModelError, match=f"{rows[3].model_version}'s files were pruned"):
            resolve_checkpoint(session, settings, rows[3].model_version)
        assert prune(session, settings, keep=2)["pruned"] == []  # run again: nothing more to do
        assert session.scalar(select(func.count(Model.id))) == 6  # every row stays
        with pytest.raises(ModelError, match="--keep must be 0 or more"):
            prune(session, settings, keep=-1)
    from annotator.cli.main import app

    out = CliRunner().invoke(app, ["-w", str(settings.workspace_path), "model", "prune", "--keep", "0", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["pruned"] == [rows[5].model_version, rows[4].model_version]  # unnamed, not kept
