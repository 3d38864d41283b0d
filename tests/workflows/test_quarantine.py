"""Sync applies annotations one by one: a malformed one is quarantined (kept with its reason, in the report
and in `round status`), the others are applied; it is not reported again, and is tried again once edited.

The annotations are Label Studio's JSON export as a person (or an attacker, or a buggy client) could leave
it; everything below the export is the real code on a real database (SQLite, then PostgreSQL)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from annotator.config import load_settings
from annotator.labelstudio.tasks import brush_result
from annotator.labelstudio.readback import parse_tasks
from annotator.store import read_mask_of
from db.engine import session_scope
from db.models import Decision, Image, Mask, Round, Task
from workflows import engine
from workflows.decisions import SyncReport, apply_annotation
from workflows.quarantine import outstanding
from workflows.queues import sync

PROJECT_ID = 7
N_IMAGES = 7


class ExportedProject:
    """What Label Studio's export of one project returns, read through our real parser."""

    def __init__(self):
        self.tasks: dict[int, dict] = {}

    def fetch_annotations(self, project_id: int) -> list:
        assert project_id == PROJECT_ID
        return parse_tasks(list(self.tasks.values()), project_id=project_id)


def _choice(value):
    return {"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": [value]}}


def _annotation(ann_id: int, result, updated_at="2026-12-01T10:00:00Z", lead_time=12.5):
    return {"id": ann_id, "completed_by": 1, "result": result, "lead_time": lead_time, "was_cancelled": False,
            "updated_at": updated_at}


@pytest.fixture
def open_round(tmp_path, sample_data, db_url):
    """A real workspace (SQLite or PostgreSQL) with N_IMAGES real images in a Stage II round, each with an
    RA review task that Label Studio holds (ids set), its seed mask standing in for the prediction."""
    from annotator.ingest.importer import import_collection
    from annotator.workspace import init_workspace

    with (sample_data / "manifest.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames
        rows = [r for r in reader if r["dataset"] == "Montgomery" and r["has_lung_mask"] == "1"][:N_IMAGES]
    collection = tmp_path / "collection"
    for row in rows:
        for key in ("file", "lung_mask_file"):
            (collection / row[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample_data / row[key], collection / row[key])
    with (collection / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    settings = load_settings(workspace=tmp_path / "ws", db_url=db_url)
    init_workspace(settings)
    with session_scope(settings.database_url) as session:
        assert import_collection(session, settings, collection, "manifest").images_added == N_IMAGES
        round_ = Round(stage=2, number=1, size=N_IMAGES, strategy="random", status="open", model_version="m-1")
        session.add(round_)
        session.flush()
        for i, image in enumerate(session.scalars(select(Image).order_by(Image.id))):
            mask = session.scalar(select(Mask).where(Mask.image_id == image.id))
            engine.move(session, image, "predict", actor="system", role="system", round_id=round_.id)
            session.add(Task(image_id=image.id, round_id=round_.id, queue="ra_review", model_version="m-1",
                             status="open", ls_project_id=PROJECT_ID, ls_task_id=100 + i,
                             payload={"mask_id": mask.id}))
    return settings


def _export(settings, annotations: dict[int, dict]) -> ExportedProject:
    """One exported task per image (in task order) with the annotation given for it, if any."""
    project = ExportedProject()
    with session_scope(settings.database_url, write=False) as session:
        for task in session.scalars(select(Task).order_by(Task.id)):
            image = session.get(Image, task.image_id)
            index = task.ls_task_id - 100
            seed = session.get(Mask, task.payload["mask_id"])
            project.tasks[task.ls_task_id] = {
                "id": task.ls_task_id, "predictions": [],
                "data": {"queue": "ra_review", "image_id": image.id, "round_id": task.round_id,
                         "width": image.width, "height": image.height,
                         "annotator_key": f"ra_review:{task.round_id}:{image.id}"},
                "annotations": [annotations[index]] if index in annotations else [],
                "_mask": read_mask_of(settings, seed),
            }
    return project


def _sync(settings, project: ExportedProject) -> dict:
    report = SyncReport()
    with session_scope(settings.database_url) as session:
        sync(session, settings, project, "ra_review", apply_annotation, report, progress=False)
    return report.as_dict()


def _states(settings) -> list[str]:
    with session_scope(settings.database_url, write=False) as session:
        return [i.state for i in session.scalars(select(Image).order_by(Image.id))]


def test_malformed_annotations_are_quarantined_one_by_one_and_the_rest_is_applied(open_round):
    settings = open_round
    project = _export(settings, {})
    masks = {tid - 100: t.pop("_mask") for tid, t in project.tasks.items()}
    huge = brush_result(masks[3])
    huge["value"]["rle"] = [32, 0, 0, 0] + huge["value"]["rle"][4:]  # the header claims 512 Mi values
    tall = brush_result(masks[1])
    tall["original_height"] = "abc"
    annotations = {
        0: _annotation(1000, [_choice("accept"), brush_result(masks[0])]),  # fine
        1: _annotation(1001, [_choice("reject"), tall]),
        2: _annotation(1002, [_choice("accept"), brush_result(masks[2])], lead_time="abc"),
        3: _annotation(1003, [_choice("reject"), huge]),
        4: _annotation(1004, [brush_result(masks[4])]),  # no decision
        5: _annotation(1005, "accept"),  # a result of the wrong type
        6: _annotation(1006, [_choice("accept"), brush_result(masks[6])]),  # fine, but see below
    }
    for index, annotation in annotations.items():
        project.tasks[100 + index]["annotations"] = [annotation]
    with session_scope(settings.database_url) as session:  # image 6's prediction file is gone: accept cannot apply
        task = session.scalar(select(Task).where(Task.ls_task_id == 106))
        missing = settings.workspace_path / session.get(Mask, task.payload["mask_id"]).store_path
    missing.unlink()

    report = _sync(settings, project)
    assert report["recorded"] == {"ra_review:accept": 1}
    quarantined = {int(m.split("annotation ")[1].split(")")[0]): m for m in report["quarantined"]}
    assert sorted(quarantined) == [1001, 1002, 1003, 1004, 1005, 1006]
    assert "abc" in quarantined[1002] and "no decision chosen" in quarantined[1004]
    assert str(missing.name) in quarantined[1006] or "ImageReadError" in quarantined[1006]
    assert _states(settings) == ["accepted"] + ["predicted"] * 6  # image 6's accept was rolled back whole
    with session_scope(settings.database_url, write=False) as session:
        rows = list(session.scalars(select(Decision).order_by(Decision.ls_annotation_id)))
        assert [(d.ls_annotation_id, d.valid) for d in rows] == [(1000, True)] + [(i, False) for i in range(1001, 1007)]
        assert all(d.message for d in rows[1:])
        assert [t.status for t in session.scalars(select(Task).order_by(Task.id))] == ["done"] + ["open"] * 6
        waiting = outstanding(session)
        assert [w["ls_annotation_id"] for w in waiting] == list(range(1001, 1007))
        from workflows.engine import replay_all

        assert replay_all(session) == {"accepted": 1, "predicted": 6}

    again = _sync(settings, project)  # nothing new: the quarantined ones are not reported again
    assert (again["recorded"], again["quarantined"], again["skipped"]) == ({}, [], 7)

    # edited in Label Studio (a new update time): tried again, and now applied
    project.tasks[101]["annotations"] = [_annotation(1001, [_choice("reject"), brush_result(masks[1])],
                                                     updated_at="2026-12-01T11:00:00Z")]
    project.tasks[104]["annotations"] = [_annotation(1004, [_choice("exclude")], updated_at="2026-12-01T11:00:00Z")]
    third = _sync(settings, project)
    assert third["recorded"] == {"ra_review:reject": 1, "ra_review:exclude": 1} and third["quarantined"] == []
    assert _states(settings) == ["accepted", "corrected", "predicted", "predicted", "excluded", "predicted",
                                 "predicted"]
    with session_scope(settings.database_url, write=False) as session:
        assert [w["ls_annotation_id"] for w in outstanding(session)] == [1002, 1003, 1005, 1006]

    # `round status` shows them, with their reasons
    import json

    from typer.testing import CliRunner

    from annotator.cli.main import app

    env = {"ANNOTATOR_DB_URL": settings.db_url} if settings.db_url else {}
    shown = CliRunner().invoke(app, ["-w", str(settings.workspace_path), "round", "status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    (row,) = json.loads(shown.output)
    assert [q["ls_annotation_id"] for q in row["quarantined"]] == [1002, 1003, 1005, 1006]
    assert "abc" in row["quarantined"][0]["reason"]
    text = CliRunner().invoke(app, ["-w", str(settings.workspace_path), "round", "status"], env=env).output
    assert "stage 2 round 1: 7 images, open, 4 annotation(s) quarantined" in text
    assert "quarantined: image" in text and "annotation 1005" in text


def test_a_decision_cannot_be_recorded_twice(open_round):
    """The unique key on (annotation id, update time) holds whoever writes: a second row is refused."""
    from sqlalchemy.exc import IntegrityError

    settings = open_round
    with session_scope(settings.database_url, write=False) as session:
        task = session.scalar(select(Task).order_by(Task.id).limit(1))
        image_id, task_id = task.image_id, task.id

    def add(session):
        session.add(Decision(image_id=image_id, task_id=task_id, actor="ra", role="RA", decision="accept",
                             ls_annotation_id=55, ls_updated_at="2026-12-01T10:00:00Z"))
        session.flush()

    with session_scope(settings.database_url) as session:
        add(session)
    with pytest.raises(IntegrityError), session_scope(settings.database_url) as session:
        add(session)
    with session_scope(settings.database_url, write=False) as session:
        assert len(list(session.scalars(select(Decision).where(Decision.ls_annotation_id == 55)))) == 1
