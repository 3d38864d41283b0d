"""Against a real Label Studio: lifecycle, projects, idempotent import with exact predictions, read-back,
and the faults (busy port, unknown project, wrong token, missing image, other size, a failed chunk)."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.config import load_settings
from annotator.errors import LabelStudioError
from annotator.imaging.rle import rle_to_mask
from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.tasks import TaskIn, brush_result
from annotator.labelstudio.queue import get_queue
from annotator.labelstudio.server import server_status, start_server

pytestmark = pytest.mark.integration

VERSION = "unet-resnet18-test000001"


def _tasks(images, queue="ra_review", round_id=1, id_offset=0):
    return [TaskIn(im.image_id + id_offset, queue, im.path, round_id=round_id, prediction_mask=im.mask,
                   model_version=VERSION, score=0.5 + im.image_id / 100) for im in images]


def test_server_runs_by_pid_and_refuses_a_busy_port(ls_settings, ls_server, tmp_path):
    state = server_status(ls_settings)
    assert (state.running, state.healthy, state.pid, state.url) == (True, True, ls_server.pid, ls_server.url)
    again = start_server(ls_settings)  # already running: the same process, nothing started
    assert again.pid == ls_server.pid
    other = load_settings(workspace=tmp_path / "other", labelstudio_port=ls_server.port)
    with pytest.raises(LabelStudioError, match=rf"port {ls_server.port} on 127.0.0.1 is in use by another program"):
        start_server(other)
    assert not (tmp_path / "other" / "labelstudio" / "annotator-server.json").exists()


def test_project_is_made_once_and_serves_store_images(ls_settings, ls_server, stored_images):
    ls = LabelStudio(ls_settings)
    first = ls.ensure_project("ra_review", round_key="it-1")
    assert ls.ensure_project("ra_review", round_key="it-1") == first
    project = ls.project(first)
    assert project["title"] == "cxr-annotator · RA review · it-1"
    assert project["label_config"].strip() == get_queue("ra_review").label_config.strip()
    storages = ls.request("GET", "/api/storages/localfiles", params={"project": first})
    assert [s["path"] for s in storages] == [str(ls_settings.image_store)]
    image = stored_images[0]
    resp = ls.http.get(ls.url + ls.image_url(image.path), timeout=10)
    assert resp.status_code == 200 and resp.content == image.path.read_bytes()


def test_import_is_idempotent_and_predictions_come_back_exact(ls_settings, ls_server, stored_images):
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-import")
    tasks = _tasks(stored_images)
    result = ls.import_tasks(project_id, tasks)
    assert (result.created, result.existing, result.failed) == (len(tasks), 0, {})
    assert sorted(result.task_ids) == sorted(t.key for t in tasks)
    again = ls.import_tasks(project_id, tasks)
    assert (again.created, again.existing, again.task_ids) == (0, len(tasks), result.task_ids)
    assert len(ls.list_task_keys(project_id)) == len(tasks)
    assert ls.project(project_id)["model_version"] == VERSION
    for image in (stored_images[0], stored_images[-1]):  # a square one and the non-square one
        task = ls.request("GET", f"/api/tasks/{result.task_ids[f'ra_review:1:{image.image_id}']}")
        (prediction,) = task["predictions"]
        (region,) = prediction["result"]
        h, w = image.pixels.shape
        assert prediction["model_version"] == VERSION and prediction["score"] == pytest.approx(0.5 + image.image_id / 100)
        assert (region["original_width"], region["original_height"]) == (w, h)
        assert np.array_equal(rle_to_mask(region["value"]["rle"], h, w), image.mask)


def test_import_goes_in_chunks_of_at_most_100(ls_settings, ls_server, stored_images):
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-chunks")
    posts: list[int] = []
    ls.http.hooks["response"].append(
        lambda resp, *a, **k: posts.append(len(resp.request.body or b"")) if resp.request.path_url.startswith(
            f"/api/projects/{project_id}/import") else None)
    tasks = [TaskIn(1000 + i, "ra_review", stored_images[i % 8].path, round_id=2) for i in range(230)]
    result = ls.import_tasks(project_id, tasks)
    assert result.created == 230 and len(posts) == 3  # 100 + 100 + 30
    assert len(set(result.task_ids.values())) == 230


def test_missing_image_and_prediction_of_another_size_fail_alone(ls_settings, ls_server, stored_images):
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-bad")
    good, square, odd = stored_images[0], stored_images[1], stored_images[-1]
    tasks = [
        TaskIn(good.image_id, "ra_review", good.path, prediction_mask=good.mask, model_version=VERSION),
        TaskIn(500, "ra_review", ls_settings.image_store / "gone.jpg", prediction_mask=good.mask, model_version=VERSION),
        TaskIn(square.image_id, "ra_review", square.path, prediction_mask=odd.mask, model_version=VERSION),
    ]
    result = ls.import_tasks(project_id, tasks)
    assert result.created == 1 and list(result.task_ids) == [tasks[0].key]
    assert sorted(result.failed) == sorted([tasks[1].key, tasks[2].key])
    assert "gone.jpg: cannot open" in result.failed[tasks[1].key]
    h, w = square.pixels.shape
    assert f"prediction is {odd.mask.shape[1]}x{odd.mask.shape[0]} but image" in result.failed[tasks[2].key]
    assert f"is {w}x{h}" in result.failed[tasks[2].key]


def test_unknown_project_lists_the_existing_ids(ls_settings, ls_server, stored_images):
    ls = LabelStudio(ls_settings)
    known = ls.ensure_project("md_verify")
    with pytest.raises(LabelStudioError, match=r"unknown Label Studio project id 987654; existing: .*\b" + str(known)):
        ls.import_tasks(987654, _tasks(stored_images[:1], queue="md_verify"))


def test_wrong_token_is_explained(ls_settings, ls_server):
    wrong = ls_settings.model_copy(update={"labelstudio_token": "not-the-token"})
    with pytest.raises(LabelStudioError) as err:
        LabelStudio(wrong).list_projects()
    assert "refused our API token (401 Unauthorized): ANNOTATOR_LABELSTUDIO_TOKEN must be the token" in str(err.value)


def test_annotations_read_back_with_invalid_ones_flagged(ls_settings, ls_server, stored_images):
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-readback")
    images = stored_images[:3]
    ids = ls.import_tasks(project_id, _tasks(images)).task_ids
    edited = images[0].mask.copy()
    edited[100:140, 120:136] = 255  # the mediastinum painted in
    choice = {"from_name": "decision", "to_name": "image", "type": "choices"}
    posted = {}
    for image, result in [
        (images[0], [choice | {"value": {"choices": ["reject"]}}, brush_result(edited),
                     {"from_name": "comment", "to_name": "image", "type": "textarea", "value": {"text": ["too small"]}}]),
        (images[1], [brush_result(images[1].mask)]),  # no decision
        (images[2], [choice | {"value": {"choices": ["reject"]}}]),  # reject without a mask
    ]:
        task_id = ids[f"ra_review:1:{image.image_id}"]
        prediction_id = ls.request("GET", f"/api/tasks/{task_id}")["predictions"][0]["id"]
        posted[image.image_id] = ls.request("POST", f"/api/tasks/{task_id}/annotations",
                                            json={"result": result, "lead_time": 9.5, "parent_prediction": prediction_id})
    outs = {o.image_id: o for o in ls.fetch_annotations(project_id)}
    assert sorted(outs) == [1, 2, 3]
    first = outs[images[0].image_id]
    assert first.valid and first.decision == "reject" and first.comment == "too small"
    assert np.array_equal(first.mask, edited) and np.array_equal(first.prediction_mask, images[0].mask)
    assert first.model_version == VERSION and first.lead_time_s == 9.5
    assert first.annotator == ls_settings.labelstudio_username
    assert first.ls_annotation_id == posted[images[0].image_id]["id"]
    assert (outs[2].valid, outs[2].message) == (False, "no decision chosen")
    assert not outs[3].valid and "needs a lung mask but the mask is empty" in outs[3].message


def test_a_chunk_that_landed_but_failed_is_not_imported_twice(ls_settings, ls_server, stored_images, dropping_proxy):
    url, proxy = dropping_proxy("/import")
    ls = LabelStudio(ls_settings.model_copy(update={"labelstudio_url": url}), backoff_s=0.05)
    project_id = ls.ensure_project("ra_review", round_key="it-retry")
    tasks = _tasks(stored_images[:4], round_id=9)
    result = ls.import_tasks(project_id, tasks)
    assert proxy.dropped == 1
    assert result.created == 4 and sorted(result.task_ids) == sorted(t.key for t in tasks)
    assert len(LabelStudio(ls_settings).list_task_keys(project_id)) == 4  # no duplicates


def test_a_new_network_in_the_same_project_is_counted_as_hidden_in_the_stream(ls_settings, ls_server, stored_images):
    """Label Studio's stream shows only the project's model_version: a second network's import says how many
    open tasks of the first lose their mask there (a project per round avoids it)."""
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("md_verify", round_key="it-versions")
    old = [TaskIn(im.image_id, "md_verify", im.path, round_id=1, prediction_mask=im.mask, model_version="net-old")
           for im in stored_images[:2]]
    new = [TaskIn(im.image_id, "md_verify", im.path, round_id=2, prediction_mask=im.mask, model_version="net-new")
           for im in stored_images[2:4]]
    first = ls.import_tasks(project_id, old)
    assert (first.hidden_in_stream, ls.project(project_id)["model_version"]) == (0, "net-old")
    stream = ls.request("GET", f"/api/projects/{project_id}/next")
    assert [p["model_version"] for p in stream["predictions"]] == ["net-old"]
    second = ls.import_tasks(project_id, new)
    assert (second.hidden_in_stream, ls.project(project_id)["model_version"]) == (2, "net-new")
    stream = ls.request("GET", f"/api/projects/{project_id}/next")  # an old open task, now without its mask
    assert stream["id"] == first.task_ids[old[0].key] and stream["predictions"] == []
