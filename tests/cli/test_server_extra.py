"""The Label Studio server is the `server` extra: without it, `labelstudio start` says how to get it in one
line. `label_studio` is made unimportable the way Python documents it (``sys.modules[name] = None``), in a
process of its own, so the real command runs against an environment that lacks the package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from annotator.labelstudio.server import free_port

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_SERVER = """
import sys
sys.modules["label_studio"] = None  # as if `pip install .` had run without the server extra
import importlib.util
assert importlib.util.find_spec("label_studio") is None
from annotator.cli.main import app
app(sys.argv[1:])
"""


def test_labelstudio_start_without_the_server_is_one_line_naming_the_extra(tmp_path):
    ws = tmp_path / "ws"
    done = subprocess.run([sys.executable, "-c", WITHOUT_SERVER, "--workspace", str(ws), "labelstudio", "start",
                           "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the Label Studio server is not installed")
    assert "pip install '.[server]'" in lines[0]
    assert not (ws / "labelstudio").exists()  # nothing was started or written


def test_the_server_extra_is_declared_and_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("label-studio>=") for r in project["optional-dependencies"]["server"])
    assert not any(r.startswith("label-studio>=") for r in project["dependencies"])  # only the client is core
    locked = {line.split("==")[0].lower() for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert "label-studio" in locked and "label-studio-sdk" in locked
