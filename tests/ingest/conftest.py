"""Small collections built in tmp_path from copies of real sample images (never from the repo)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def manifest_rows(sample_data) -> list[dict]:
    with (sample_data / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pick(rows: list[dict], n: int, **where) -> list[dict]:
    """The first n rows whose columns equal ``where`` (a value True means: non-empty)."""
    out = [r for r in rows if all((bool(r[k]) if v is True else r[k] == v) for k, v in where.items())]
    assert len(out) >= n, f"the sample set has only {len(out)} rows with {where}"
    return out[:n]


def write_manifest_collection(root: Path, sample_data: Path, rows: list[dict], copy: bool = True) -> Path:
    """A manifest-layout collection at root holding copies of the rows' images and masks."""
    root.mkdir(parents=True, exist_ok=True)
    for row in rows:
        for column in ("file", "lung_mask_file", "infection_mask_file"):
            if copy and row.get(column) and (sample_data / row[column]).is_file():
                dest = root / row[column]
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sample_data / row[column], dest)
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def rows_where(manifest_rows):
    """rows_where(n, **where): the first n sample rows matching (copies, free to edit)."""
    return lambda n, **where: [dict(r) for r in pick(manifest_rows, n, **where)]


@pytest.fixture
def manifest_collection(sample_data):
    """manifest_collection(root, rows, copy=True): write a manifest-layout collection."""
    return lambda root, rows, copy=True: write_manifest_collection(root, sample_data, rows, copy)


def run_cli(*args):
    """The CLI in-process: a Typer CliRunner result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from annotator.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def cli():
    """cli(*args): run `annotator ARGS` in-process."""
    return run_cli
