"""The CLI end to end (Typer's CliRunner): exit codes, what it prints, and what lands in the DB."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotator.cli.main import app
from db.engine import create_db_engine, session_scope
from db.models import Image, Mask

SAMPLE_BY_CLASS = {"covid": 323, "mers": 1, "non_covid_pneumonia": 105, "normal": 293, "sars": 16,
                   "tuberculosis": 184}


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _counts(ws) -> tuple[int, int, int]:
    with session_scope(f"sqlite:///{ws / 'annotator.db'}") as session:
        return (session.scalar(select(func.count(Image.id))),
                session.scalar(select(func.count(Mask.id)).where(Mask.kind == "lung")),
                session.scalar(select(func.count(Mask.id)).where(Mask.kind == "infection")))


@pytest.fixture(scope="module")
def imported(tmp_path_factory, sample_data):
    """`annotator data import <sample set> --layout manifest` into a fresh workspace, run twice."""
    ws = tmp_path_factory.mktemp("cli") / "ws"
    first = invoke("-w", ws, "data", "import", sample_data, "--layout", "manifest")
    counts_after_first = _counts(ws)
    second = invoke("-w", ws, "data", "import", sample_data, "--layout", "manifest")
    return ws, first, second, counts_after_first


def _table_value(output: str, label: str) -> int:
    line = next(line for line in output.splitlines() if label in line)
    return int(line.rstrip(" │|").split()[-1])


def test_init_creates_the_workspace_and_is_safe_to_rerun(tmp_path):
    ws = tmp_path / "ws"
    result = invoke("-w", ws, "init")
    assert result.exit_code == 0
    assert f"workspace created: {ws.resolve()}" in result.stdout
    assert (ws / "annotator.db").is_file()
    assert all((ws / d).is_dir() for d in ("store/images", "store/masks", "models", "exports", "reports"))
    again = invoke("-w", ws, "init")
    assert again.exit_code == 0 and "workspace ready" in again.stdout
    assert _counts(ws) == (0, 0, 0)


def test_workspace_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_WORKSPACE", str(tmp_path / "envws"))
    assert invoke("init").exit_code == 0
    assert (tmp_path / "envws" / "annotator.db").is_file()


def test_import_of_the_whole_sample_set(imported):
    ws, first, _, counts = imported
    assert first.exit_code == 0, first.output
    assert counts == (922, 783, 12)
    assert _table_value(first.stdout, "items seen") == 922
    assert _table_value(first.stdout, "images added") == 922
    assert _table_value(first.stdout, "lung masks added") == 783
    assert _table_value(first.stdout, "infection masks added") == 12
    assert _table_value(first.stdout, "failures") == 0
    assert "922/922" in first.stderr  # the progress bar
    assert len([p for p in (ws / "store" / "images").rglob("*") if p.is_file()]) == 922
    assert len([p for p in (ws / "store" / "masks").rglob("*") if p.is_file()]) == 795


def test_second_import_adds_nothing(imported):
    ws, _, second, counts = imported
    assert second.exit_code == 0
    assert _table_value(second.stdout, "images added") == 0
    assert _table_value(second.stdout, "images already in the store") == 922
    assert _table_value(second.stdout, "lung masks added") == 0
    assert _table_value(second.stdout, "duplicate content") == 0
    assert _counts(ws) == counts == (922, 783, 12)


def test_status_json(imported):
    ws = imported[0]
    result = invoke("-w", ws, "status", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["images"] == 922
    assert report["masks"] == {"lung": 783, "infection": 12}
    assert report["by_class"] == SAMPLE_BY_CLASS
    assert report["by_dataset"]["Montgomery"] == 114 and report["by_dataset"]["Shenzhen"] == 300
    assert report["masks_by_origin"] == {"lung": {"seed": 783}, "infection": {"seed": 12}}
    assert report["by_state"] == {"pool": 922} and report["working_model"] is None


def test_status_table(imported):
    result = invoke("-w", imported[0], "status")
    assert result.exit_code == 0
    assert "922 images; masks: lung 783, infection 12" in result.stdout
    assert _table_value(result.stdout, "tuberculosis") == 184


def test_validate_passes_then_catches_tampering(imported, tmp_path):
    src = imported[0]
    create_db_engine(f"sqlite:///{src / 'annotator.db'}").dispose()
    ws = tmp_path / "ws"
    shutil.copytree(src, ws)
    good = invoke("-w", ws, "data", "validate")
    assert good.exit_code == 0
    assert "checked 922 images and 795 masks: all good" in good.stdout
    with session_scope(f"sqlite:///{ws / 'annotator.db'}") as session:
        image = session.scalar(select(Image).where(Image.file_name.like("%MCUCXR_0001_0.jpg")))
        other = session.scalar(select(Image).where(Image.file_name.like("%MCUCXR_0002_0.jpg")))
        mask = session.scalar(select(Mask).where(Mask.image_id == other.id))
        image_id, image_path, mask_id, mask_path = image.id, image.store_path, mask.id, mask.store_path
    raw = bytearray((ws / image_path).read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte: still a JPEG, no longer its content
    (ws / image_path).write_bytes(bytes(raw))
    (ws / mask_path).unlink()
    bad = invoke("-w", ws, "data", "validate")
    assert bad.exit_code == 1
    assert "2 problem(s)" in bad.stdout
    problems = [line for line in bad.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 2
    assert problems[0].startswith(f"problem: image {image_id} (") and "does not match its content hash" in problems[0]
    assert problems[1].startswith(f"problem: mask {mask_id} (lung v1") and mask_path.split("/")[-1] in problems[1]


def test_import_of_bad_files_lists_them_and_exits_3_for_a_partial_import(tmp_path, sample_data):
    root = tmp_path / "col"
    (root / "covid").mkdir(parents=True)
    good = sorted((sample_data / "images" / "covid").glob("*.jpg"))[:2]
    for path in good:
        shutil.copyfile(path, root / "covid" / path.name)
    (root / "covid" / "zero.jpg").write_bytes(b"")
    (root / "covid" / "notes.png").write_text("not an image")
    ws = tmp_path / "ws"
    result = invoke("-w", ws, "data", "import", root, "--layout", "folder")
    assert result.exit_code == 3
    failed = sorted(line for line in result.stdout.splitlines() if line.startswith("failed:"))
    assert len(failed) == 2
    assert failed[0].startswith("failed: covid/notes.png: ") and "not a readable image" in failed[0]
    assert failed[1].startswith("failed: covid/zero.jpg: ") and "empty file" in failed[1]
    assert "partial import: 2 item(s) failed; the rest was imported (2 in the store)" in result.stderr
    assert "(exit code 3)" in result.stderr
    assert _counts(ws) == (2, 0, 0)
    as_json = invoke("-w", ws, "data", "import", root, "--layout", "folder", "--json")
    summary = json.loads(as_json.stdout)
    assert as_json.exit_code == 3 and summary["outcome"] == "partial"
    assert (summary["images_added"], summary["images_known"], len(summary["failures"])) == (0, 2, 2)
    assert summary["by_class"] == {}


def test_unknown_layout_writes_nothing(tmp_path, sample_data):
    ws = tmp_path / "ws"
    result = invoke("-w", ws, "data", "import", sample_data, "--layout", "kaggle")
    assert result.exit_code == 1
    assert ("error: unknown layout 'kaggle'; valid: covid-qu-ex, folder, manifest, montgomery-shenzhen"
            in result.stderr)
    assert not ws.exists()


def test_import_of_a_missing_folder(tmp_path):
    result = invoke("-w", tmp_path / "ws", "data", "import", tmp_path / "nowhere", "--layout", "folder")
    assert result.exit_code == 1 and "nowhere: not a folder" in result.stderr


def test_status_without_workspace_says_what_to_run(tmp_path):
    result = invoke("-w", tmp_path / "none", "status", "--json")
    assert result.exit_code == 1
    assert "no workspace at" in result.stderr and "annotator init" in result.stderr
    assert not (tmp_path / "none").exists()


def test_console_script_runs(tmp_path):
    exe = shutil.which("annotator", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the `annotator` console script is not installed in this environment (pip install -e .)"
    done = subprocess.run([exe, "-w", str(tmp_path / "ws"), "status"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "annotator init" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.postgres
@pytest.mark.integration
def test_the_cli_on_postgresql(tmp_path, sample_data, postgres_db_url, monkeypatch):
    """Any SQLAlchemy URL works: init, import and status through ANNOTATOR_DB_URL on a real PostgreSQL."""
    monkeypatch.setenv("ANNOTATOR_DB_URL", postgres_db_url)
    root = tmp_path / "col"
    for cls in ("sars", "mers"):
        shutil.copytree(sample_data / "images" / cls, root / cls)
    ws = tmp_path / "ws"
    init = invoke("-w", ws, "init")
    assert init.exit_code == 0 and f"database: {postgres_db_url}" in init.stdout
    assert not (ws / "annotator.db").exists()
    assert invoke("-w", ws, "data", "import", root, "--layout", "folder").exit_code == 0
    report = json.loads(invoke("-w", ws, "status", "--json").stdout)
    assert (report["images"], report["by_class"], report["masks"]) == (17, {"sars": 16, "mers": 1},
                                                                       {"lung": 0, "infection": 0})
    again = invoke("-w", ws, "data", "import", root, "--layout", "folder", "--json")
    assert json.loads(again.stdout)["images_known"] == 17
