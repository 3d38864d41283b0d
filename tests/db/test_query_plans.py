"""Every read of `round next` (candidates, choice, pre-labelling, tasks) and of `status` uses an index:
each SELECT they run on a real workspace, on SQLite and on a real PostgreSQL server, goes through the
database's EXPLAIN, and none may scan one of our tables whole (such a read grows with the pool on every
call; benchmarks/scale_bench.py measures it)."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.explain import captured_statements, full_scans


def _working_network(settings, session):
    """An untrained U-Net-ResNet18 (64 px), registered as the working network, and its Predictor."""
    import torch

    from annotator.segmentation.checkpoint import save_checkpoint
    from annotator.segmentation.factory import build_model
    from annotator.segmentation.predict import Predictor
    from annotator.segmentation.registry import get_spec
    from annotator.model_registry import mark_working, register

    torch.manual_seed(0)
    spec = get_spec("unet-resnet18", input_size_px=64)
    path = settings.models_path / "plan.pt"
    ckpt = save_checkpoint(path, spec, build_model(spec).state_dict(), preset="tiny")
    mark_working(session, register(session, model_version=ckpt.model_version, spec=spec.name, preset="tiny",
                                         checkpoint_path=str(path.relative_to(settings.workspace_path)), metrics={},
                                         snapshot={}, stage="stage1"))
    return Predictor.from_checkpoint(path, backend="eager", device=settings.device)


@pytest.mark.parametrize("strategy", ["stratified", "uncertainty"])
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_round_next_and_status_read_through_indexes(database, strategy, request, sample_data, tmp_path):
    from annotator.config import load_settings
    from annotator.ingest.importer import import_collection
    from annotator.status import collect_status
    from annotator.workspace import init_workspace
    from db.models import Task
    from workflows.stage2 import start_round

    db_url = request.getfixturevalue("postgres_db_url") if database == "postgresql" else None
    workspace = load_settings(workspace=tmp_path / "ws", db_url=db_url)
    init_workspace(workspace)

    folder = tmp_path / "pool"
    shutil.copytree(sample_data / "images" / "sars", folder)
    with session_scope(workspace.database_url) as session:
        assert import_collection(session, workspace, folder, "folder").images_added == 16
        predictor = _working_network(workspace, session)
    with session_scope(workspace.database_url) as session, captured_statements() as statements:
        report = start_round(session, workspace, predictor, size=6, target=100, strategy=strategy, progress=False)
        status = collect_status(session)
        scans = full_scans(session.connection(), statements)
        assert session.scalar(select(func.count(Task.id)).where(Task.round_id == report.round_id)) == 6
    assert status["images"] == 16 and status["by_state"]["predicted"] == 6
    if strategy == "uncertainty":  # all 16 scored (5 x 6 > 16): the six the network is least sure of
        from annotator.segmentation.postprocess import mean_entropy
        from annotator.store import image_pixels
        from db.models import Image

        with session_scope(workspace.database_url) as session:
            images = list(session.scalars(select(Image).order_by(Image.id)))
            scores = {i.id: mean_entropy(p) for i, p in
                      zip(images, predictor.predict_proba([image_pixels(workspace, i) for i in images]), strict=True)}
            taken = set(session.scalars(select(Task.image_id).where(Task.round_id == report.round_id)))
        assert taken == set(sorted(scores, key=lambda i: (-scores[i], i))[:6])
    selects = {s.sql for s in statements if s.sql.lstrip().upper().startswith("SELECT")}
    assert len(selects) >= 10  # the check saw the paths' reads
    assert scans == [], "\n".join(f"{plan}: {sql}" for sql, plan in scans)
