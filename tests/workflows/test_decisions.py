"""The decision table without Label Studio: every choice of every queue's label config has a handler, the
import-time check catches what it must, and each handler, on a real SQLite workspace with a real CXR and
its real lung mask, leaves the state, the history, the mask rows and the follow-up tasks it should."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from sqlalchemy import select

from annotator.errors import ProtocolError
from annotator.ingest.importer import import_items
from annotator.ingest.layouts import ImportItem, read_manifest
from annotator.labelstudio.queue import CONFIG_DIR, QUEUES, Queue, get_queue
from annotator.labelstudio.readback import AnnotationOut
from annotator.store import add_mask, read_mask_of
from db.engine import session_scope
from db.models import Decision, Image, Mask, Round, Task
from workflows import engine, protocol
from workflows.decisions import HANDLERS, SyncReport, apply_annotation, build_table, check_table
from workflows.handler import Handler

# how an image reaches the queue (events from pool) and what each decision leaves
REACH = {Queue.RA_REVIEW: ("predict",), Queue.MD_ADVICE: ("predict", "doubt"),
         Queue.RA_ADJUST: ("predict", "doubt", "advise"), Queue.BEST_OF_SIX: ("nominate",),
         Queue.MD_VERIFY: ("seed", "sample")}
# (queue, decision) -> (state, origin of the new mask or None, which mask it holds, follow-up queue or None)
EXPECTED = {
    ("ra_review", "accept"): ("accepted", "ra_accepted", "shown", None),
    ("ra_review", "reject"): ("corrected", "ra_edited", "drawn", None),
    ("ra_review", "unsure"): ("unsure", None, None, Queue.MD_ADVICE),
    ("ra_review", "exclude"): ("excluded", None, None, None),
    ("md_advice", "accept"): ("adjusted", "md_adjusted", "shown", None),
    ("md_advice", "adjust"): ("md_advised", None, None, Queue.RA_ADJUST),
    ("md_advice", "exclude"): ("excluded", None, None, None),
    ("ra_adjust", "adjusted"): ("adjusted", "md_adjusted", "drawn", None),
    **{("best_of_six", f"m{k}"): ("selected", "ra_accepted", f"net{k}", None) for k in range(1, 7)},
    ("best_of_six", "deny"): ("denied", None, None, None),
    ("md_verify", "verified"): ("verified", "md_verified", "shown", None),
    ("md_verify", "corrected"): ("md_corrected", "md_corrected", "drawn", None),
}


def _xml_choices(queue: str) -> set[str]:
    root = ET.parse(CONFIG_DIR / f"{queue}.xml").getroot()
    return {c.get("value") for c in root.iter("Choice")}


def test_every_choice_of_every_label_config_has_a_handler_and_no_handler_lacks_one():
    assert {p.stem for p in CONFIG_DIR.glob("*.xml")} == {str(q) for q in Queue} == set(QUEUES)
    for queue in Queue:
        assert {d for q, d in HANDLERS if q == queue} == _xml_choices(queue), queue
    assert set(HANDLERS) == set(EXPECTED)
    assert "unsure" not in _xml_choices(Queue.RA_ADJUST)


def test_who_works_a_queue_is_who_may_cause_its_events():
    assert {q: get_queue(q).role for q in Queue} == {"ra_review": "RA", "md_advice": "MD", "ra_adjust": "RA",
                                                      "best_of_six": "RA", "md_verify": "MD"}
    assert protocol.EVENTS["select"].roles == {"RA"}


def test_the_check_names_a_choice_without_handler_a_wrong_role_and_an_illegal_chain():
    without = {k: h for k, h in HANDLERS.items() if k != ("ra_review", "unsure")}
    with pytest.raises(ProtocolError, match=r"queue ra_review offers \['unsure'\] but no handler takes them"):
        check_table(without)
    noop = HANDLERS[("best_of_six", "deny")].apply
    wrong_role = {**HANDLERS, ("best_of_six", "deny"): Handler(Queue.BEST_OF_SIX, "deny", ("verify",), noop)}
    with pytest.raises(ProtocolError, match=r"best_of_six:deny causes 'verify', which a RA may not \(only \['MD'\]\)"):
        check_table(wrong_role)
    bad_chain = {**HANDLERS, ("ra_review", "reject"): Handler(Queue.RA_REVIEW, "reject", ("correct", "reject"), noop)}
    with pytest.raises(ProtocolError, match=r"ra_review:reject: events \['correct', 'reject'\] cannot follow"):
        check_table(bad_chain)
    with pytest.raises(ProtocolError, match="two handlers for decision 'deny' in queue best_of_six"):
        build_table([HANDLERS[("best_of_six", "deny")]] * 2)


@pytest.fixture(scope="module")
def real_item(sample_data) -> ImportItem:
    return next(i for i in read_manifest(sample_data) if isinstance(i, ImportItem) and i.lung_mask_path)


def _annotation(task: Task, decision: str, mask: np.ndarray | None) -> AnnotationOut:
    return AnnotationOut(key=f"{task.queue}:{task.round_id}:{task.image_id}", image_id=task.image_id,
                         round_id=task.round_id, queue=task.queue, ls_project_id=1, ls_task_id=10,
                         ls_annotation_id=100, decision=decision, mask=mask, lead_time_s=12.5, annotator="person1",
                         ls_prediction_id=None, model_version=None, prediction_mask=None,
                         comment="a comment", updated_at="2026-01-01T00:00:00Z")


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=":".join)
def test_each_handler_on_a_real_workspace(key, workspace, real_item):
    queue, choice = Queue(key[0]), key[1]
    state, origin, holds, follow_up = EXPECTED[key]
    settings = workspace
    with session_scope(settings.database_url) as session:
        assert import_items(session, settings, [real_item], "manifest").ok
        image = session.scalar(select(Image))
        seed = session.scalar(select(Mask).where(Mask.image_id == image.id, Mask.kind == "lung"))
        truth = read_mask_of(settings, seed)
        assert truth.any() and truth.shape == (image.height, image.width)
        masks = {"drawn": truth, "shown": np.roll(truth, 9, axis=1)}  # what the person draws / is shown
        masks.update({f"net{k}": np.roll(truth, 3 * k, axis=0) for k in range(1, 7)})
        round_ = Round(stage=2, number=1, size=1, strategy="stratified", status="open")
        session.add(round_)
        session.flush()
        for event in REACH[queue]:  # each step by a role its event admits
            engine.move(session, image, event, actor="setup", role=sorted(protocol.get_event(event).roles)[0],
                        round_id=round_.id)
        if queue == Queue.BEST_OF_SIX:
            rows = [add_mask(session, settings, image, "lung", masks[f"net{k}"], origin="model",
                             model_version=f"net-{k}") for k in range(1, 7)]
            payload = {"mask_ids": [r.id for r in rows], "model_versions": [f"net-{k}" for k in range(1, 7)]}
        else:
            shown = add_mask(session, settings, image, "lung", masks["shown"], origin="model", model_version="net-0")
            payload = {"mask_id": shown.id, "qc": "ok"}
        task = Task(image_id=image.id, round_id=round_.id, queue=queue, model_version="net-0", status="open",
                    payload=payload)
        session.add(task)
        session.flush()
        before = session.scalar(select(Mask.id).order_by(Mask.id.desc()).limit(1))
        report = SyncReport()
        drawn = masks["drawn"] if choice in get_queue(queue).mask_required_for else None
        apply_annotation(session, settings, task, _annotation(task, choice, drawn), report)

        assert image.state == state and task.status == "done"
        history = [t.event for t in engine.history(session, image.id)][len(REACH[queue]):]
        assert history == list(HANDLERS[key].events)
        new_masks = list(session.scalars(select(Mask).where(Mask.id > before)))
        if origin is None:
            assert new_masks == []
        else:
            (row,) = new_masks
            assert row.origin == origin and row.author == "person1" and row.decision_id is not None
            assert np.array_equal(read_mask_of(settings, row), masks[holds])
        (decision,) = session.scalars(select(Decision))
        assert (decision.decision, decision.role, decision.actor, decision.valid) == (
            choice, get_queue(queue).role, "person1", True)
        if queue == Queue.BEST_OF_SIX and choice != "deny":
            assert (decision.detail, decision.model_version) == (choice, f"net-{choice[1]}")
        tasks = list(session.scalars(select(Task).where(Task.id != task.id)))
        assert [t.queue for t in tasks] == ([follow_up] if follow_up else [])
        assert report.new_tasks == ({str(follow_up): 1} if follow_up else {})
        if follow_up:
            assert tasks[0].payload["mask_id"] == payload["mask_id"] and tasks[0].status == "open"
            assert tasks[0].payload["ra_case" if follow_up == Queue.MD_ADVICE else "advice"] == "a comment"
        if state == "excluded":
            assert image.attributes["excluded_reason"] == "a comment"
        assert report.recorded == {f"{queue}:{choice}": 1}


def test_a_choice_the_table_lacks_is_an_error_that_names_it(workspace, real_item):
    with session_scope(workspace.database_url) as session:
        assert import_items(session, workspace, [real_item], "manifest").ok
        image = session.scalar(select(Image))
        engine.move(session, image, "predict", actor="system", role="system")
        task = Task(image_id=image.id, queue=Queue.RA_ADJUST, status="open", payload={})
        session.add(task)
        session.flush()
        stale = _annotation(task, "unsure", None)  # a project made with the old config still offers it
        with pytest.raises(ProtocolError, match=r"decision 'unsure' has no meaning in queue ra_adjust"):
            apply_annotation(session, workspace, task, stale, SyncReport())
