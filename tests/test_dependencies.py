"""Dependencies tell the truth: every third-party module the package imports is declared (core or an extra),
every core dependency is imported somewhere, and every declared one is pinned in requirements.lock."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("annotator", "db", "workflows", "ml_backend")
# declared but reached without an import statement of ours, with the reason
NOT_IMPORTED = {
    "onnx": "torch.onnx.export writes through it",
    "label-studio": "run as `python -m label_studio.server` (the server extra)",
    "psycopg": "SQLAlchemy loads it for postgresql+psycopg:// URLs (the postgres extra)",
    "pytest": "the test runner (dev)",
    "playwright": "the browser tests (dev)",
    "pillow": "the tests write RGBA and LA PNGs with it (dev)",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!;\[~(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    return core, extras


def _imported_top_level() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def _distributions_of(module: str) -> set[str]:
    return {d.lower().replace("_", "-") for d in metadata.packages_distributions().get(module, [])}


def test_every_imported_module_is_declared():
    core, extras = _declared()
    undeclared = {m: sorted(_distributions_of(m)) for m in _imported_top_level()
                  if not _distributions_of(m) & (core | extras)}
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_core_dependency_is_imported():
    core, _ = _declared()
    imported = set().union(*(_distributions_of(m) for m in _imported_top_level()))
    unused = sorted(d for d in core if d not in imported and d not in NOT_IMPORTED)
    assert unused == [], f"declared in pyproject.toml but never imported: {unused}"


def test_every_declared_dependency_is_pinned():
    core, extras = _declared()
    locked = {_name(line) for line in (ROOT / "requirements.lock").read_text().splitlines()
              if line and not line.startswith("#")}
    assert sorted((core | extras) - locked) == []
    assert "scikit-image" not in locked  # dropped: OpenCV and SciPy do its work here
