"""`annotator data validate` on a store someone tampered with: files swapped for a FIFO, a folder, a link loop,
a truncated copy, a mask with grey levels; a database that is not one. Each is one problem line naming the
row, exit 1, no traceback, nothing hangs."""

from __future__ import annotations

import os
import shutil

import numpy as np
from sqlalchemy import select

from annotator.imaging.io import write_png
from db.engine import create_db_engine, session_scope
from db.models import Image, Mask


def _imported(tmp_path, sample_data, cli):
    root = tmp_path / "col" / "normal"
    root.mkdir(parents=True)
    for path in sorted((sample_data / "images" / "normal").glob("MCUCXR_*.jpg"))[:5]:
        shutil.copyfile(path, root / path.name)
    ws = tmp_path / "ws"
    assert cli("-w", ws, "data", "import", tmp_path / "col", "--layout", "folder").exit_code == 0
    create_db_engine(f"sqlite:///{ws / 'annotator.db'}").dispose()
    return ws


def test_tampered_store_is_one_problem_per_row(tmp_path, sample_data, cli):
    ws = _imported(tmp_path, sample_data, cli)
    url = f"sqlite:///{ws / 'annotator.db'}"
    with session_scope(url) as session:
        images = list(session.scalars(select(Image).order_by(Image.id)))
        session.add(Mask(image_id=images[4].id, kind="lung", version=1, origin="seed", file_hash="0" * 64,
                         store_path="store/masks/lung/grey.png"))
        paths = [ws / i.store_path for i in images]
        ids = [i.id for i in images]
    grey = np.full((images[4].height, images[4].width), 100, np.uint8)
    write_png(ws / "store/masks/lung/grey.png", grey)
    paths[0].unlink()
    os.mkfifo(paths[0])  # reading it would block forever
    paths[1].unlink()
    paths[1].mkdir()
    paths[2].unlink()
    os.symlink(paths[2].name, paths[2])  # a link to itself
    paths[3].write_bytes(paths[3].read_bytes()[:300])
    result = cli("-w", ws, "data", "validate")
    assert result.exit_code == 1 and "Traceback" not in result.output
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    by_row: dict[str, list[str]] = {}
    for line in problems:
        row, _, reason = line[len("problem: "):].partition("): ")
        by_row.setdefault(row + ")", []).append(reason)
    assert len(by_row) == 5, by_row  # one row each; a row may have more than one problem
    rows = sorted(by_row)
    for image_id in ids[:3]:
        (reasons,) = [v for k, v in by_row.items() if k.startswith(f"image {image_id} (")]
        assert len(reasons) == 1 and "not a regular file (re-import its collection to restore it)" in reasons[0]
    (truncated,) = [v for k, v in by_row.items() if k.startswith(f"image {ids[3]} (")]
    assert "does not match its content hash" in truncated[0]
    (mask,) = [v for k, v in by_row.items() if k.startswith("mask ")]
    assert any("not a binary mask (1 levels: 100)" in r for r in mask), rows


def test_a_database_that_is_not_one_is_one_line(tmp_path, cli):
    ws = tmp_path / "ws"
    assert cli("-w", ws, "init").exit_code == 0
    (ws / "annotator.db").write_bytes(b"not a database, just text\n" * 100)
    for command in (["data", "validate"], ["status", "--json"], ["export", tmp_path / "out"]):
        result = cli("-w", ws, *command)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "cannot open the workspace database" in result.stderr and "file is not a database" in result.stderr
