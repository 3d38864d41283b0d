"""Light core, heavy leaves: the CLI's start-up, db, workflows and the Label Studio adapter import without
torch (python-statemachine keeps the same kind of test for its optional pydot: tests/test_optional_pydot.py).

Each check runs in a fresh interpreter, so nothing this test session imported can hide a heavy import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("torch", "torchvision", "segmentation_models_pytorch", "timm", "onnxruntime")
# packages whose every module must stay light (segmentation/, recognition/, ml_backend/ are the heavy leaves)
LIGHT_PACKAGES = ("db", "workflows", "annotator.labelstudio", "annotator.cli", "annotator.imaging",
                  "annotator.ingest")
LIGHT_MODULES = ("annotator", "annotator.config", "annotator.errors", "annotator.status", "annotator.workspace",
                 "annotator.evaluation.metrics", "annotator.segmentation.presets")

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    heavy, packages, modules = {heavy!r}, {packages!r}, {modules!r}
    names = ["annotator.cli.main", "db", "workflows", "annotator.labelstudio", *modules]
    for pkg in packages:
        names += [pkg + "." + m.name for m in pkgutil.iter_modules(importlib.import_module(pkg).__path__)]
    culprit, errors = None, {{}}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            errors[name] = type(exc).__name__ + ": " + str(exc)
            continue
        loaded = [h for h in heavy if h in sys.modules]
        if loaded:
            culprit = [name, loaded]
            break
    print(json.dumps({{"checked": names, "culprit": culprit, "errors": errors}}))
    """
)


def _probe() -> dict:
    code = PROBE.format(heavy=HEAVY, packages=LIGHT_PACKAGES, modules=LIGHT_MODULES)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_imports_leave_torch_out():
    result = _probe()
    assert result["culprit"] is None, f"{result['culprit'][0]} imports {result['culprit'][1]} at import time"
    assert result["errors"] == {}
    assert {"annotator.cli.main", "db.models", "db.engine", "workflows"} <= set(result["checked"])


def test_cli_help_runs_without_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom annotator.cli.main import app\n"
            "r = CliRunner().invoke(app, ['--help'])\n"
            "print(r.exit_code, 'torch' in sys.modules, 'data' in r.output)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["0", "False", "True"], done.stderr
