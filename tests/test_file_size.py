"""No source file of the packages over 400 lines: a module that grows past it holds more than one thing."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("annotator", "db", "ml_backend", "workflows", "benchmarks")
MAX_LINES = 400


def test_no_module_is_over_400_lines():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50  # the walk found the packages
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in files}
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert over == {}, f"split these by responsibility (limit {MAX_LINES} lines): {over}"
