"""Label Studio on PostgreSQL (`annotator labelstudio start --postgres URL`): a real Label Studio migrates
into a real PostgreSQL database, our client makes a project and tasks in it, and they are rows there,
not in a SQLite file; the password never reaches what the command prints."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from annotator.config import load_settings
from annotator.labelstudio.server import free_port, stop_server
from annotator.labelstudio.tasks import TaskIn
from workflows.session import labelstudio_client

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_labelstudio_runs_on_postgresql(tmp_path, postgres_db_url, stored_images):
    pytest.importorskip("label_studio", reason="needs the label-studio package")
    from annotator.cli.main import app

    plain = postgres_db_url.replace("postgresql+psycopg://", "postgresql://")
    with_password = plain.replace("postgresql://postgres@", "postgresql://postgres:not-shown-4711@")
    ws = tmp_path / "ws"
    port = free_port()
    runner = CliRunner()
    assert runner.invoke(app, ["-w", str(ws), "init"]).exit_code == 0
    settings = load_settings(workspace=ws, labelstudio_port=port, labelstudio_db_url=with_password)
    settings.image_store.mkdir(parents=True, exist_ok=True)
    image = stored_images[0]
    (settings.image_store / image.path.name).write_bytes(image.path.read_bytes())
    out = runner.invoke(app, ["-w", str(ws), "labelstudio", "start", "--port", str(port), "--timeout", "400",
                              "--postgres", with_password])
    try:
        assert out.exit_code == 0, out.output
        assert "database: postgresql://postgres:***@" in out.output and "not-shown-4711" not in out.output
        assert not (settings.labelstudio_data / "label_studio.sqlite3").exists()
        ls = labelstudio_client(settings)
        project = ls.ensure_project("ra_review")
        result = ls.import_tasks(project, [TaskIn(1, "ra_review", settings.image_store / image.path.name,
                                                  round_id=1, prediction_mask=image.mask, model_version="v")])
        assert len(result.task_ids) == 1
        engine = create_engine(postgres_db_url)  # the trust-auth server ignores the password we passed
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from project where id = :p"), {"p": project}).scalar() == 1
            assert conn.execute(text("select count(*) from task where project_id = :p"), {"p": project}).scalar() == 1
        engine.dispose()
    finally:
        stop_server(settings)
