"""Export: staged and renamed into place; a split change never leaves an image in two splits; a failed export
leaves the previous one as it was; a folder that is not an export is never replaced."""

from __future__ import annotations

import csv
import json
import os

import pytest
from sqlalchemy import select

from annotator.errors import AnnotatorError
from annotator.ingest.importer import import_items, list_items
from db.engine import session_scope
from db.models import Image
from workflows.engine import move
from workflows.export import export_covid_qu_ex
from workflows.splits import assign_splits


@pytest.fixture
def repository(workspace, sample_data):
    """Six imported seed images with lung masks (from the sample set, in place), split 4 train / 2 test."""
    with (sample_data / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "Shenzhen" and r["lung_mask_file"]][:6]
    with session_scope(workspace.database_url) as session:
        items = list_items(sample_data, "manifest")
        wanted = {r["file"] for r in rows}
        import_items(session, workspace, [i for i in items if i.name in wanted], "manifest")
        images = list(session.scalars(select(Image).order_by(Image.id)))
        for image in images:
            move(session, image, "seed", actor="test", role="system")
        ids = [i.id for i in images]
        assign_splits(session, set(ids[:2]), set(ids[2:]), val_share=0.0)
    return workspace, ids


def _exported(out) -> dict[int, list[str]]:
    """image id -> the split folders its image file sits in."""
    found: dict[int, list[str]] = {}
    for path in (out / "Lung Segmentation Data").rglob("images/cxr_*.png"):
        found.setdefault(int(path.stem.split("_")[1]), []).append(path.parents[2].name)
    return found


def _leftovers(out) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_split_change_moves_the_image_and_rerun_is_the_same(repository, tmp_path):
    settings, ids = repository
    out = tmp_path / "exports" / "quex"
    with session_scope(settings.database_url) as session:
        first = export_covid_qu_ex(session, settings, out)
    assert (first.images, first.by_split) == (6, {"test": 2, "train": 4})
    assert _exported(out) == {i: ["Test"] for i in ids[:2]} | {i: ["Train"] for i in ids[2:]}
    marker = json.loads((out / "export.json").read_text())
    assert (marker["images"], marker["by_split"]) == (6, {"test": 2, "train": 4})
    with session_scope(settings.database_url) as session:  # ids[2] moves from train to test
        assign_splits(session, set(ids[:3]), set(ids[3:]), val_share=0.0)
        export_covid_qu_ex(session, settings, out)
    exported = _exported(out)
    assert exported[ids[2]] == ["Test"] and all(len(v) == 1 for v in exported.values()) and len(exported) == 6
    with (out / "lineage.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["split"] for r in rows if r["image_id"] == str(ids[2])} == {"test"}
    with session_scope(settings.database_url) as session:
        export_covid_qu_ex(session, settings, out)
    assert _exported(out) == exported and _leftovers(out) == []


def test_missing_store_file_fails_naming_it_and_keeps_the_previous_export(repository, tmp_path):
    settings, ids = repository
    out = tmp_path / "quex"
    with session_scope(settings.database_url) as session:
        export_covid_qu_ex(session, settings, out)
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        lost = settings.workspace_path / session.get(Image, ids[3]).store_path
    lost.unlink()
    with session_scope(settings.database_url) as session, pytest.raises(AnnotatorError) as err:
        export_covid_qu_ex(session, settings, out)
    assert str(lost) in str(err.value) and "the export was not changed" in str(err.value)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and _leftovers(out) == []


def test_a_folder_that_is_not_an_export_is_never_replaced(repository, tmp_path):
    settings, _ = repository
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    with session_scope(settings.database_url) as session:
        with pytest.raises(AnnotatorError, match=r"thesis holds files that are not an export .*choose a new or empty"):
            export_covid_qu_ex(session, settings, mine)
        with pytest.raises(AnnotatorError, match=r"holds the workspace"):
            export_covid_qu_ex(session, settings, settings.workspace_path.parent)
        (tmp_path / "afile").write_text("x")
        with pytest.raises(AnnotatorError, match=r"afile exists and is not a folder"):
            export_covid_qu_ex(session, settings, tmp_path / "afile")
    assert (mine / "chapter1.tex").read_text() == "precious" and sorted(os.listdir(mine)) == ["chapter1.tex"]


def test_leftovers_of_a_killed_export_are_cleared(repository, tmp_path):
    settings, _ = repository
    out = tmp_path / "quex"
    dead = tmp_path / ".quex.staging-999999999"  # no such process
    (dead / "Lung Segmentation Data").mkdir(parents=True)
    with session_scope(settings.database_url) as session:
        summary = export_covid_qu_ex(session, settings, out)
    assert summary.images == 6 and _leftovers(out) == []
