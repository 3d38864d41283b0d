"""Per-workspace secrets: random, 0600, env wins, never printed but by `labelstudio credentials`; a bind
beyond loopback with default secrets is refused with the fix; the workspace is 0700."""

from __future__ import annotations

import logging
import stat

import pytest
from typer.testing import CliRunner

from annotator.cli.main import app
from annotator.config import load_settings
from annotator.credentials import SECRET_FIELDS, check_bind, default_value, is_loopback, secrets_path
from annotator.errors import ConfigError

SERVER_SECRETS = SECRET_FIELDS[:3]


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch):
    for name in SECRET_FIELDS + ("backend_host", "labelstudio_host"):
        monkeypatch.delenv(f"ANNOTATOR_{name.upper()}", raising=False)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_init_writes_random_secrets_0600_in_a_0700_workspace_and_never_prints_them(tmp_path):
    ws_a, ws_b = tmp_path / "a", tmp_path / "b"
    out_a, out_b = invoke("-w", ws_a, "init"), invoke("-w", ws_b, "init")
    assert out_a.exit_code == 0 and out_b.exit_code == 0
    path = secrets_path(ws_a.resolve())
    assert f"secrets: {path} (mode 0600" in out_a.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ws_a.stat().st_mode) == 0o700
    a, b = load_settings(workspace=ws_a), load_settings(workspace=ws_b)
    for name in SECRET_FIELDS:
        value = getattr(a, name)
        assert value != default_value(name) and len(value) >= 16 and value != getattr(b, name)
        assert value not in out_a.stdout and value not in out_a.stderr
    assert len(a.labelstudio_token) == 40  # Label Studio's token column holds 40 characters
    before = path.read_text()
    assert invoke("-w", ws_a, "init").exit_code == 0 and path.read_text() == before  # never overwritten


def test_env_wins_over_the_secrets_file_and_settings_show_them_masked(tmp_path, monkeypatch, caplog):
    ws = tmp_path / "ws"
    invoke("-w", ws, "init")
    stored = load_settings(workspace=ws)
    monkeypatch.setenv("ANNOTATOR_BACKEND_TOKEN", "from-the-environment-0123456789")
    settings = load_settings(workspace=ws)
    assert settings.backend_token == "from-the-environment-0123456789"
    assert settings.labelstudio_token == stored.labelstudio_token  # the others still from the file
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s / %r", settings, settings)
    for name in SECRET_FIELDS:
        assert getattr(settings, name) not in caplog.text and getattr(settings, name) not in repr(settings)
    assert "backend_token='***'" in repr(settings)


def test_only_the_credentials_command_prints_them(tmp_path):
    ws = tmp_path / "ws"
    invoke("-w", ws, "init")
    settings = load_settings(workspace=ws)
    shown = invoke("-w", ws, "labelstudio", "credentials")
    assert shown.exit_code == 0
    lines = dict(line.split(": ", 1) for line in shown.stdout.splitlines())
    assert {k: lines[k] for k in SERVER_SECRETS} == {k: getattr(settings, k) for k in SERVER_SECRETS}
    assert lines["labelstudio_username"] == settings.labelstudio_username


def test_a_secrets_file_others_can_read_is_refused_with_the_fix(tmp_path):
    ws = tmp_path / "ws"
    invoke("-w", ws, "init")
    path = secrets_path(ws.resolve())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"readable by other users \(mode 644\); run `chmod 600 {path}`"):
        load_settings(workspace=ws)
    path.chmod(0o600)
    path.write_text('backend_token = 5\n')
    with pytest.raises(ConfigError, match="only string values of labelstudio_password"):
        load_settings(workspace=ws)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "", "example.org", "::"])
def test_a_bind_beyond_loopback_with_default_secrets_is_refused(tmp_path, host):
    settings = load_settings(workspace=tmp_path / "ws")
    with pytest.raises(ConfigError) as info:
        check_bind(settings, host, "the ML backend")
    message = str(info.value)
    assert message.startswith(f"refusing to serve the ML backend on {host!r} (beyond loopback) with default")
    assert "run `annotator init` (it writes random secrets to" in message
    assert "ANNOTATOR_LABELSTUDIO_PASSWORD/LABELSTUDIO_TOKEN/BACKEND_TOKEN" in message
    empty = settings.model_copy(update={"labelstudio_password": "x" * 20, "labelstudio_token": "y" * 40,
                                        "backend_token": ""})
    with pytest.raises(ConfigError, match=r"\(backend_token\)"):
        check_bind(empty, host, "the ML backend")
    strong = settings.model_copy(update={"labelstudio_password": "p" * 20, "labelstudio_token": "t" * 40,
                                         "backend_token": "b" * 40})
    check_bind(strong, host, "the ML backend")  # random-looking secrets: allowed


def test_loopback_binds_keep_the_built_in_defaults(tmp_path):
    settings = load_settings(workspace=tmp_path / "ws")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert is_loopback(host)
        check_bind(settings, host, "Label Studio")


def test_cli_refuses_a_public_bind_before_loading_anything(tmp_path):
    ws = tmp_path / "ws"
    missing = tmp_path / "no-such-checkpoint.pt"
    result = invoke("-w", ws, "serve", "backend", "--host", "0.0.0.0", "--checkpoint", missing)
    assert result.exit_code == 1
    assert "refusing to serve the ML backend on '0.0.0.0' (beyond loopback)" in result.stderr
    assert "does not exist" not in result.stderr  # refused before the checkpoint is even looked at


def test_label_studio_start_refuses_a_public_bind(tmp_path, monkeypatch):
    from annotator.labelstudio.server import start_server

    settings = load_settings(workspace=tmp_path / "ws", labelstudio_host="0.0.0.0")
    with pytest.raises(ConfigError, match="refusing to serve Label Studio on '0.0.0.0'"):
        start_server(settings)
    assert not settings.labelstudio_data.exists()  # nothing started, nothing written
