"""Settings: explicit arguments > ANNOTATOR_* environment > the settings file > defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from annotator.config import ConfigError, Settings, find_sample_data, load_settings


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("ANNOTATOR_ROUND_SIZE", "ANNOTATOR_DEVICE", "ANNOTATOR_PREDICT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.workspace_path == (tmp_path / "workspace").resolve()
    assert s.database_url == f"sqlite:///{tmp_path / 'workspace' / 'annotator.db'}"
    assert (s.round_size, s.target_masks, s.device) == (500, 3000, "auto")
    assert s.image_store == s.workspace_path / "store" / "images"
    assert s.labelstudio_base_url == "http://127.0.0.1:8080"


def test_env_beats_file_beats_defaults(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "annotator.toml").write_text('[annotator]\nround_size = 40\ntarget_masks = 900\ndevice = "cuda"\n')
    monkeypatch.setenv("ANNOTATOR_ROUND_SIZE", "25")
    monkeypatch.delenv("ANNOTATOR_TARGET_MASKS", raising=False)
    monkeypatch.delenv("ANNOTATOR_DEVICE", raising=False)
    monkeypatch.delenv("ANNOTATOR_LABELSTUDIO_PORT", raising=False)
    s = load_settings(workspace=ws)
    assert s.round_size == 25  # environment
    assert (s.target_masks, s.device) == (900, "cuda")  # file
    assert s.labelstudio_port == 8080  # default
    # an explicit argument beats them all
    assert load_settings(workspace=ws, round_size=7).round_size == 7


def test_config_file_from_env_and_top_level_keys(tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text('labelstudio_url = "http://ls.example:9000"\nbackend_port = 9191\n')
    monkeypatch.setenv("ANNOTATOR_CONFIG", str(path))
    monkeypatch.setenv("ANNOTATOR_WORKSPACE", str(tmp_path / "w"))
    s = load_settings()
    assert (s.labelstudio_base_url, s.backend_port) == ("http://ls.example:9000", 9191)
    assert s.workspace_path == (tmp_path / "w").resolve()


def test_db_url_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_DB_URL", "postgresql+psycopg://u@db/annotator")
    assert load_settings(workspace=tmp_path).database_url == "postgresql+psycopg://u@db/annotator"


@pytest.mark.parametrize(("content", "match"), [("round_size = 'many'\n", "round_size"),
                                                ("colour = 'blue'\n", "colour"),
                                                ("round_size = \n", "cannot read settings file")])
def test_bad_settings_are_config_errors_naming_the_field(tmp_path, content, match):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_settings(workspace=tmp_path, config_file=path)


def test_bad_env_value_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_PREDICT_BACKEND", "tpu")
    with pytest.raises(ConfigError, match="predict_backend"):
        load_settings(workspace=tmp_path)


def test_settings_are_frozen(tmp_path):
    s = load_settings(workspace=tmp_path)
    assert isinstance(s, Settings)
    with pytest.raises(ValidationError, match="frozen"):
        s.round_size = 3


def test_sample_data_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_SAMPLE_DATA", str(tmp_path))
    assert find_sample_data() == tmp_path.resolve()
    assert load_settings(workspace=tmp_path).sample_data_path == tmp_path.resolve()
