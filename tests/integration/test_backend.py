"""Our ML backend as its own process: token, order, batch, one model_version everywhere, swap, faults,
and Label Studio asking it for predictions through the connection the SDK made."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
import requests

from annotator.imaging.rle import rle_to_mask
from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.tasks import TaskIn

pytestmark = pytest.mark.integration


def _auth(settings):
    return {"Authorization": f"Token {settings.backend_token}"}


def _task(image, settings, task_id=1):
    rel = image.path.relative_to(settings.store_path).as_posix()
    return {"id": task_id, "data": {"image": f"/data/local-files/?d={rel}"}}


@pytest.fixture(scope="session")
def reference(tiny_checkpoint):
    from annotator.segmentation.predict import Predictor

    return Predictor.from_checkpoint(tiny_checkpoint, backend="eager")


def test_health_is_open_everything_else_needs_the_token(ls_settings, backend):
    health = requests.get(backend.url + "/health", timeout=10).json()
    assert health["status"] == "UP" and health["loads"] == 1
    no_token = requests.post(backend.url + "/setup", json={}, timeout=10)
    wrong = requests.post(backend.url + "/predict", json={"tasks": []}, headers={"Authorization": "Token nope"}, timeout=10)
    for resp in (no_token, wrong):
        assert resp.status_code == 401
        assert resp.json()["error"].startswith("missing or wrong token: send 'Authorization: Token <ANNOTATOR_BACKEND_TOKEN>'")
    basic = base64.b64encode(f"labelstudio:{ls_settings.backend_token}".encode()).decode()
    ok = requests.post(backend.url + "/setup", json={}, headers={"Authorization": f"Basic {basic}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["model_version"] == health["model_version"]


def test_predict_batch_in_order_with_one_model_version(ls_settings, backend, stored_images, reference):
    images = [stored_images[-1], stored_images[0], stored_images[3]]  # non-square first
    setup = requests.post(backend.url + "/setup", json={"project": "1.0"}, headers=_auth(ls_settings), timeout=10).json()
    body = {"tasks": [_task(im, ls_settings, i) for i, im in enumerate(images, start=1)]}
    resp = requests.post(backend.url + "/predict", json=body, headers=_auth(ls_settings), timeout=60)
    assert resp.status_code == 200
    results = resp.json()["results"]
    expected = reference.predict([im.pixels for im in images])
    assert len(results) == 3
    assert setup["model_version"] == reference.model_version
    for result, image, want in zip(results, images, expected):
        assert result["model_version"] == setup["model_version"]
        assert 0.0 <= result["score"] <= 1.0
        (region,) = result["result"]
        h, w = image.pixels.shape
        assert (region["original_width"], region["original_height"]) == (w, h)
        assert np.array_equal(rle_to_mask(region["value"]["rle"], h, w), want)
    assert requests.get(backend.url + "/health", timeout=10).json()["loads"] == 1  # loaded once, not per request


def test_missing_image_fails_the_batch_and_names_the_task(ls_settings, backend, stored_images):
    body = {"tasks": [_task(stored_images[0], ls_settings, 1), {"id": 2, "data": {"image": "/data/local-files/?d=images/gone.jpg"}}]}
    resp = requests.post(backend.url + "/predict", json=body, headers=_auth(ls_settings), timeout=30)
    assert resp.status_code == 422
    err = resp.json()
    assert err["error"] == "1 of 2 task image(s) cannot be read; nothing predicted"
    assert err["tasks"][0]["task"] == 2 and "gone.jpg: cannot open" in err["tasks"][0]["error"]
    bad = requests.post(backend.url + "/predict", data=b"{not json", headers=_auth(ls_settings), timeout=10)
    assert bad.status_code == 400 and bad.json()["error"].startswith("request body is not JSON")


def test_webhook_records_the_event_and_returns_at_once(ls_settings, backend):
    payload = {"action": "ANNOTATION_CREATED", "project": {"id": 3}, "task": {"id": 8, "data": {"annotator_key": "ra_review:1:2"}},
               "annotation": {"id": 21, "result": []}}
    resp = requests.post(backend.url + "/webhook", json=payload, headers=_auth(ls_settings), timeout=10)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    lines = (ls_settings.labelstudio_data / "backend-events.jsonl").read_text().splitlines()
    event = json.loads(lines[-1])
    assert (event["action"], event["project"], event["task"], event["annotation"], event["annotator_key"]) == (
        "ANNOTATION_CREATED", 3, 8, 21, "ra_review:1:2")


def test_label_studio_gets_predictions_through_the_sdk_connection(ls_settings, ls_server, backend, stored_images, reference):
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-backend")
    images = stored_images[:3]
    ids = ls.import_tasks(project_id, [TaskIn(im.image_id, "ra_review", im.path, round_id=5) for im in images]).task_ids
    backend_id = ls.connect_backend(project_id, backend.url, ls_settings.backend_token)
    assert ls.connect_backend(project_id, backend.url, ls_settings.backend_token) == backend_id
    ml = ls.request("GET", f"/api/ml/{backend_id}")
    assert ml["state"] == "CO" and ml["model_version"] == reference.model_version
    for _ in range(2):  # asking twice must not duplicate: /setup's version equals the predictions'
        ls.request("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project_id},
                   json={"selectedItems": {"all": True, "excluded": []}})
    expected = dict(zip([im.image_id for im in images], reference.predict([im.pixels for im in images])))
    for image in images:
        task = ls.request("GET", f"/api/tasks/{ids[f'ra_review:5:{image.image_id}']}")
        assert [p["model_version"] for p in task["predictions"]] == [reference.model_version]
        region = task["predictions"][0]["result"][0]
        h, w = image.pixels.shape
        assert np.array_equal(rle_to_mask(region["value"]["rle"], h, w), expected[image.image_id])


def test_backend_swaps_when_the_working_network_changes(tiny_checkpoint, second_checkpoint, start_backend, tmp_path):
    from annotator.config import load_settings
    from annotator.segmentation.checkpoint import load_checkpoint
    from db.engine import migrate, session_scope
    from db.models import Model

    settings = load_settings(workspace=tmp_path / "ws")
    settings.workspace_path.mkdir(parents=True)
    migrate(settings.database_url)
    first, second = load_checkpoint(tiny_checkpoint), load_checkpoint(second_checkpoint)
    assert first.model_version != second.model_version
    with session_scope(settings.database_url) as session:
        session.add(Model(model_version=first.model_version, spec=first.spec.name, checkpoint_path=str(tiny_checkpoint),
                          is_working=True))
    proc = start_backend(settings)
    try:
        auth = {"Authorization": f"Token {settings.backend_token}"}
        assert requests.post(proc.url + "/setup", json={}, headers=auth, timeout=10).json()["model_version"] == first.model_version
        with session_scope(settings.database_url) as session:
            session.query(Model).update({Model.is_working: False})
            session.add(Model(model_version=second.model_version, spec=second.spec.name,
                              checkpoint_path=str(second_checkpoint), is_working=True))
        deadline = time.monotonic() + 30
        version = first.model_version
        while version == first.model_version and time.monotonic() < deadline:
            time.sleep(0.5)
            version = requests.post(proc.url + "/setup", json={}, headers=auth, timeout=30).json()["model_version"]
        assert version == second.model_version
        health = requests.get(proc.url + "/health", timeout=10).json()
        assert (health["model_version"], health["loads"]) == (second.model_version, 2)
    finally:
        proc.stop()


def test_label_studio_posts_annotation_events_to_the_backend_webhook(ls_settings, ls_server, backend, stored_images):
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-webhook")
    image = stored_images[1]
    task_id = ls.import_tasks(project_id, [TaskIn(image.image_id, "ra_review", image.path, round_id=6)]).task_ids[
        f"ra_review:6:{image.image_id}"]
    hook_id = ls.ensure_webhook(project_id, backend.url + "/webhook", ls_settings.backend_token)
    assert ls.ensure_webhook(project_id, backend.url + "/webhook", ls_settings.backend_token) == hook_id
    annotation = ls.request("POST", f"/api/tasks/{task_id}/annotations", json={"result": [
        {"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": ["exclude"]}}]})
    events_path = ls_settings.labelstudio_data / "backend-events.jsonl"
    deadline = time.monotonic() + 20
    found = []
    while not found and time.monotonic() < deadline:
        lines = events_path.read_text().splitlines() if events_path.exists() else []
        found = [e for e in map(json.loads, lines) if e["annotation"] == annotation["id"]]
        time.sleep(0.3)
    assert [(e["action"], e["task"], e["annotator_key"]) for e in found] == [
        ("ANNOTATION_CREATED", task_id, f"ra_review:6:{image.image_id}")]
