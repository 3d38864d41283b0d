"""`annotator config show` (values, sources, masked secrets), the README's settings table, one-line errors
for bad settings, and `annotator --version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotator.cli.main import app
from annotator.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_START = "<!-- settings table:"
TABLE_END = "<!-- end of settings table -->"


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No ANNOTATOR_* variable and no annotator.toml in reach: every setting at its default."""
    for name in list(os.environ):
        if name.upper().startswith("ANNOTATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def show_json(*args: str) -> dict:
    out = invoke(*args, "config", "show", "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def readme_rows() -> list[list[str]]:
    text = README.read_text()
    block = text[text.index(TABLE_START):text.index(TABLE_END)].splitlines()[1:]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block[2:] if line.strip()]


def test_readme_table_equals_config_show_json(clean):
    data = show_json()
    rows = data["settings"]
    assert [r["name"] for r in rows] == list(Settings.model_fields)  # every setting, in declaration order
    assert {r["source"] for r in rows} == {"default"} and all(r["value"] == r["default"] for r in rows)
    readme = readme_rows()
    assert [cells[0] for cells in readme] == [f"`{r['name']}`" for r in rows], \
        "regenerate the README's table: annotator config show --markdown"
    for cells, row in zip(readme, rows, strict=True):
        assert cells[1] == f"`{row['env']}`"
        shown = cells[2].strip("`")
        if row["default"] in (None, ""):  # unset or empty: said in words
            assert shown.startswith("(") and shown.endswith(")")
        else:
            assert shown == str(row["default"])
        assert cells[3] == row["description"] != ""
    markdown = invoke("config", "show", "--markdown").stdout
    assert markdown in README.read_text()  # the regenerating command writes exactly the README's table


def test_sources_and_masked_secrets(clean, monkeypatch):
    ws = clean / "ws"
    ws.mkdir()
    (ws / "annotator.toml").write_text('[annotator]\nround_size = 40\nlabelstudio_password = "file-secret-pw"\n')
    (ws / "secrets.toml").write_text('labelstudio_token = "workspace-secret-token"\n')
    (ws / "secrets.toml").chmod(0o600)
    monkeypatch.setenv("ANNOTATOR_LABELSTUDIO_PORT", "8181")
    monkeypatch.setenv("ANNOTATOR_BACKEND_TOKEN", "env-secret-token")
    monkeypatch.setenv("ANNOTATOR_LABELSTUDIO_PROT", "1")  # a typo: names no setting
    data = show_json("--workspace", ws)
    rows = {r["name"]: r for r in data["settings"]}
    assert data["file"] == str(ws / "annotator.toml")
    assert (rows["round_size"]["value"], rows["round_size"]["source"]) == (40, "file")
    assert (rows["labelstudio_port"]["value"], rows["labelstudio_port"]["source"]) == (8181, "environment")
    assert (rows["workspace"]["value"], rows["workspace"]["source"]) == (str(ws), "option")
    assert (rows["target_masks"]["value"], rows["target_masks"]["source"]) == (3000, "default")
    assert rows["labelstudio_password"]["source"] == "file" and rows["backend_token"]["source"] == "environment"
    assert rows["labelstudio_token"]["source"] == "secrets file" and rows["labelstudio_token"]["value"] == "***"
    assert data["unknown_variables"] == ["ANNOTATOR_LABELSTUDIO_PROT"]
    text = invoke("--workspace", ws, "config", "show")
    assert text.exit_code == 0, text.output
    for out in (json.dumps(data), text.output):
        assert "file-secret-pw" not in out and "env-secret-token" not in out and "workspace-secret-token" not in out
    assert "***" in text.stdout and "ANNOTATOR_LABELSTUDIO_PROT names no setting" in text.stderr
    line = next(x for x in text.stdout.splitlines() if x.split()[:1] == ["labelstudio_port"])
    assert line.split() == ["labelstudio_port", "8181", "environment"]


@pytest.mark.parametrize(("where", "key", "value", "allowed"), [
    ("env", "LABELSTUDIO_PORT", "abc", "a whole number"),
    ("env", "BACKEND_PORT", "70000", "a TCP port, 1 to 65535"),
    ("env", "PREDICT_BACKEND", "tpu", "one of: eager, bf16, onnx"),
    ("env", "ROUND_SIZE", "0", "1 or more"),
    ("env", "ACCEPT_DSC", "1.5", "from 0 to 1"),
    ("env", "DEVICE", "gpu", "cpu, cuda, cuda:N or mps"),
    ("env", "DB_URL", "not a url", "a SQLAlchemy URL"),
    ("file", "labelstudio_url", "'ftp://x'", "an http:// or https:// URL"),
    ("file", "torch_threads", "-2", "0 (torch's default)"),
])
def test_a_bad_setting_is_one_line_naming_setting_value_and_what_is_allowed(clean, monkeypatch, where, key,
                                                                           value, allowed):
    ws = clean / "ws"
    ws.mkdir()
    if where == "env":
        monkeypatch.setenv(f"ANNOTATOR_{key}", value)
        source = f"environment ANNOTATOR_{key}"
    else:
        (ws / "annotator.toml").write_text(f"{key} = {value}\n")
        source = f"file {ws / 'annotator.toml'}"
    out = invoke("--workspace", ws, "config", "show")
    assert out.exit_code == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    shown = repr(value) if where == "env" else value  # the environment gives text; TOML its own types
    assert lines[0].startswith(f"error: invalid setting: {key.lower()} = {shown} "), lines[0]
    assert source in lines[0] and allowed in lines[0] and "pydantic" not in lines[0]


def test_an_unknown_key_in_the_file_lists_the_known_ones(clean):
    (clean / "annotator.toml").write_text("round_sise = 3\n")
    out = invoke("--config", clean / "annotator.toml", "status")
    assert out.exit_code == 1
    line = out.stderr.strip()
    assert "\n" not in line and "unknown setting 'round_sise'" in line and "round_size" in line


def test_a_secret_given_badly_is_not_echoed(clean, monkeypatch):
    (clean / "annotator.toml").write_text("labelstudio_token = 12345678\n")
    out = invoke("--config", clean / "annotator.toml", "config", "show")
    assert out.exit_code == 1 and "labelstudio_token = *** " in out.stderr and "12345678" not in out.stderr


def test_version_names_the_installed_versions_without_importing_torch():
    code = ("import sys\nfrom annotator.cli.main import app\n"
            "try:\n    app(['--version'])\nexcept SystemExit as exc:\n    code = exc.code\n"
            "print('torch imported:', 'torch' in sys.modules, 'exit:', code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "torch imported: False exit: 0", done.stdout + done.stderr
    found = dict(line.split(" ", 1) for line in lines[:-1])
    assert found["cxr-annotator"] == metadata.version("cxr-annotator")
    for dist in ("torch", "segmentation-models-pytorch", "label-studio", "label-studio-sdk"):
        try:
            assert found[dist] == metadata.version(dist)
        except metadata.PackageNotFoundError:
            assert found[dist].startswith("not installed (pip install")
