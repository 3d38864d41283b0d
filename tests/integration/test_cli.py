"""`annotator labelstudio start|status|stop` and `annotator serve backend`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from typer.testing import CliRunner

from annotator.cli.main import app
from annotator.labelstudio.server import free_port

pytestmark = pytest.mark.integration


def test_labelstudio_start_status_stop(tmp_path, ls_server):  # ls_server: the template exists by now
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    port = free_port()
    assert runner.invoke(app, ["-w", ws, "init"]).exit_code == 0  # random secrets for this workspace
    started = runner.invoke(app, ["-w", ws, "labelstudio", "start", "--port", str(port)])
    try:
        assert started.exit_code == 0, started.output
        assert f"Label Studio running at http://127.0.0.1:{port}" in started.output
        assert "log in as admin@cxr-annotator.local; password and tokens: `annotator labelstudio credentials`" in (
            started.output)
        env = {"ANNOTATOR_LABELSTUDIO_PORT": str(port)}
        creds = json.loads(runner.invoke(app, ["-w", ws, "labelstudio", "credentials", "--json"], env=env).stdout)
        assert creds["labelstudio_token"] not in started.output and creds["labelstudio_password"] not in started.output
        # the userless template's first start here made this workspace's user with its random token
        projects = requests.get(f"http://127.0.0.1:{port}/api/projects", timeout=10,
                                headers={"Authorization": f"Token {creds['labelstudio_token']}"})
        assert projects.status_code == 200 and projects.json()["count"] == 0
        default = requests.get(f"http://127.0.0.1:{port}/api/projects", timeout=10,
                               headers={"Authorization": "Token cxr-annotator-dev-token-0001"})
        assert default.status_code == 401
        log_text = (tmp_path / "ws" / "labelstudio" / "labelstudio.log").read_text(errors="replace")
        assert creds["labelstudio_token"] not in log_text and creds["labelstudio_password"] not in log_text
        status = runner.invoke(app, ["-w", ws, "labelstudio", "status", "--json"], env=env)
        assert status.exit_code == 0
        state = json.loads(status.output)
        assert (state["running"], state["healthy"], state["url"]) == (True, True, f"http://127.0.0.1:{port}")
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json() == {"status": "UP"}
    finally:
        stopped = runner.invoke(app, ["-w", ws, "labelstudio", "stop"])
    assert stopped.exit_code == 0 and stopped.output.strip() == "Label Studio stopped"
    after = runner.invoke(app, ["-w", ws, "labelstudio", "status"], env={"ANNOTATOR_LABELSTUDIO_PORT": str(port)})
    assert after.exit_code == 1 and "nothing answers" in after.output
    assert runner.invoke(app, ["-w", ws, "labelstudio", "stop"]).output.strip() == "Label Studio was not running"


def test_serve_backend_command_serves_the_checkpoint(tmp_path, tiny_checkpoint):
    from annotator.segmentation.checkpoint import load_checkpoint

    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "ANNOTATOR_PREDICT_BACKEND": "eager", "ANNOTATOR_BACKEND_TOKEN": "tok-cli-test-1"}
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "annotator.cli.main", "-w", str(tmp_path / "ws"), "serve", "backend",
                                 "--checkpoint", str(tiny_checkpoint), "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT,
                                env=env)
    try:
        deadline = time.monotonic() + 120
        health = None
        while health is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except requests.RequestException:
                time.sleep(0.3)
        assert health is not None, log.read_text()
        version = load_checkpoint(tiny_checkpoint).model_version
        assert health["model_version"] == version
        setup = requests.post(f"http://127.0.0.1:{port}/setup", json={}, headers={"Authorization": "Token tok-cli-test-1"},
                              timeout=10)
        assert setup.json() == {"model_version": version}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert f"ML backend at http://127.0.0.1:{port} serving {version}" in log.read_text()
    assert "tok-cli-test-1" not in log.read_text()  # the token is never printed at start
