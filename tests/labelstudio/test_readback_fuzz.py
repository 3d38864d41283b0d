"""Property tests of the annotation read-back: random JSON and mutated real annotations end in an
AnnotationOut or an AnnotatorError, never another exception, in bounded memory; the cases of issue 11
(a non-numeric original_height or lead time, an RLE header claiming 512 Mi values) are invalid, not crashes."""

from __future__ import annotations

import copy
import tracemalloc

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.errors import AnnotatorError
from annotator.labelstudio.tasks import brush_result, prediction_payload
from annotator.labelstudio.readback import AnnotationOut, parse_annotation, parse_tasks


FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
MEMORY_CAP = 48 << 20

KEYS = ["id", "data", "queue", "height", "width", "image_id", "round_id", "annotator_key", "annotations",
        "predictions", "result", "type", "from_name", "value", "choices", "brushlabels", "rle", "format", "text",
        "original_height", "original_width", "lead_time", "completed_by", "email", "parent_prediction",
        "prediction", "was_cancelled", "updated_at", "model_version", "decision", "mask", "comment", "Lung",
        "brushlabels", "choices", "textarea", "ra_review", "accept", "reject"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.sampled_from(KEYS),
                    st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)


def _parse_bounded(task, annotation):
    tracemalloc.start()
    try:
        try:
            out = parse_annotation(task, annotation, project_id=1, users={1: "ra@example.org"})
        except AnnotatorError as exc:
            out = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_CAP, peak
    if isinstance(out, AnnotationOut):
        assert out.valid == (out.message is None)
        assert isinstance(out.ls_task_id, int) and isinstance(out.ls_annotation_id, int)
        assert out.lead_time_s is None or isinstance(out.lead_time_s, float)
    return out


@FUZZ
@given(task=json_values, annotation=json_values)
def test_random_json_is_an_annotation_or_an_annotator_error(task, annotation):
    _parse_bounded(task, annotation)


@FUZZ
@given(tasks=json_values)
def test_parse_tasks_never_raises(tasks):
    out = parse_tasks(tasks, project_id=1)
    assert all(isinstance(o, AnnotationOut) for o in out)


@pytest.fixture(scope="module")
def real_task(real_pairs):
    """A real RA review task (a 40x56 shrink of a real lung mask) with an annotation: a reject and a stroke."""
    _, _, full = real_pairs[2]
    mask = cv2.resize(full, (56, 40), interpolation=cv2.INTER_NEAREST)
    h, w = mask.shape
    prediction = prediction_payload(mask, "unet-resnet18-0123456789", 0.8) | {"id": 5}
    stroke = np.zeros_like(mask)
    stroke[10:20, 5:30] = 255
    annotation = {"id": 7, "completed_by": 1, "lead_time": 14.25, "parent_prediction": 5, "was_cancelled": False,
                  "updated_at": "2026-11-26T12:00:00Z",
                  "result": [{"from_name": "decision", "to_name": "image", "type": "choices",
                              "value": {"choices": ["reject"]}}, brush_result(mask), brush_result(stroke)]}
    task = {"id": 11, "data": {"image": "/data/x.png", "annotator_key": "ra_review:3:42", "image_id": 42,
                               "round_id": 3, "queue": "ra_review", "width": w, "height": h},
            "predictions": [prediction], "annotations": [annotation]}
    out = parse_annotation(task, annotation, project_id=1)
    assert out.valid and np.array_equal(out.mask, mask | stroke)
    return task


def _paths(value, prefix=()):
    """Every path (tuple of keys / indexes) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


@st.composite
def mutated_task(draw, original):
    task = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(task) if p]
        path = draw(st.sampled_from(paths))
        parent = task
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return task


@FUZZ
@given(data=st.data())
def test_mutated_real_annotation_is_an_annotation_or_an_annotator_error(real_task, data):
    task = data.draw(mutated_task(real_task))
    annotations = task.get("annotations") if isinstance(task, dict) else None
    annotation = annotations[0] if isinstance(annotations, list) and annotations else {"id": 7}
    _parse_bounded(task, annotation)
    assert all(isinstance(o, AnnotationOut) for o in parse_tasks([task], project_id=1))


@pytest.mark.parametrize(("where", "value", "words"), [
    (("result", 1, "original_height"), "abc", "original_height 'abc', not a positive whole number"),
    (("lead_time",), "abc", "lead_time 'abc' is not a number of seconds"),
    (("lead_time",), float("inf"), "lead_time inf is not a number of seconds"),
    (("result", 1, "value", "rle"), [32, 0, 0, 0] + [0] * 40, "claims 536870912 values"),
])
def test_issue_cases_are_invalid_with_a_message(real_task, where, value, words):
    annotation = copy.deepcopy(real_task["annotations"][0])
    parent = annotation
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    out = _parse_bounded(real_task, annotation)
    assert isinstance(out, AnnotationOut) and not out.valid and words in out.message, out.message


def test_annotation_without_an_id_is_left_out_of_parse_tasks(real_task, caplog):
    task = copy.deepcopy(real_task)
    task["annotations"].append(dict(task["annotations"][0], id="seven"))
    with pytest.raises(AnnotatorError, match="has no whole-number id"):
        parse_annotation(task, task["annotations"][1], project_id=1)
    outs = parse_tasks([task], project_id=1)
    assert [o.ls_annotation_id for o in outs] == [7]
    assert "annotation 'seven' of task 11 has no whole-number id" in caplog.text
