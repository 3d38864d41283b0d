"""Read-back of exported annotations into decisions, with real lung masks: exact masks, invalid cases."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.imaging.rle import mask_to_rle
from annotator.labelstudio.tasks import brush_result, prediction_payload
from annotator.labelstudio.readback import lung_mask, parse_annotation, parse_tasks


def _choice(value):
    return {"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": [value]}}


def _comment(text, tag="comment"):
    return {"from_name": tag, "to_name": "image", "type": "textarea", "value": {"text": [text]}}


def _task(mask, queue="ra_review", annotations=(), task_id=11):
    h, w = mask.shape
    prediction = prediction_payload(mask, "unet-resnet18-0123456789", 0.8) | {"id": 5}
    return {"id": task_id, "data": {"image": "/data/local-files/?d=images/x.jpg", "annotator_key": f"{queue}:3:42",
                                    "image_id": 42, "round_id": 3, "queue": queue, "width": w, "height": h},
            "predictions": [prediction], "annotations": list(annotations)}


def _annotation(result, ann_id=7, **extra):
    return {"id": ann_id, "completed_by": 1, "result": result, "lead_time": 14.25, "parent_prediction": 5,
            "was_cancelled": False, "updated_at": "2026-11-26T12:00:00Z", **extra}


def test_reject_with_two_strokes_reads_back_their_exact_union(real_pairs):
    _, _, mask = real_pairs[2]  # a non-square image: width and height must not be swapped
    h, w = mask.shape
    stroke_a = np.zeros_like(mask)
    stroke_a[h // 2 : h // 2 + 9, 5 : w - 5] = 255
    stroke_b = np.zeros_like(mask)
    stroke_b[3:20, 3:11] = 255
    result = [_choice("reject"), brush_result(mask), brush_result(stroke_a), brush_result(stroke_b),
              _comment("left base missed")]
    out = parse_annotation(_task(mask), _annotation(result), project_id=2, users={1: "ra@example.org"})
    expected = mask | stroke_a | stroke_b
    assert out.valid and out.message is None
    assert out.decision == "reject"
    assert np.array_equal(out.mask, expected)
    assert np.array_equal(out.prediction_mask, mask)
    assert out.edited is True
    assert (out.key, out.image_id, out.round_id, out.queue) == ("ra_review:3:42", 42, 3, "ra_review")
    assert (out.ls_project_id, out.ls_task_id, out.ls_annotation_id, out.ls_prediction_id) == (2, 11, 7, 5)
    assert out.model_version == "unet-resnet18-0123456789"
    assert out.lead_time_s == 14.25 and out.annotator == "ra@example.org"
    assert out.comment == "left base missed" and out.updated_at == "2026-11-26T12:00:00Z"


def test_accept_unchanged_is_not_an_edit(real_pairs):
    _, _, mask = real_pairs[0]
    out = parse_annotation(_task(mask), _annotation([_choice("accept"), brush_result(mask)]), project_id=1)
    assert out.valid and out.decision == "accept" and out.edited is False
    assert int(out.mask.sum() // 255) == int(mask.sum() // 255)


def test_no_decision_is_invalid_with_a_message(real_pairs):
    _, _, mask = real_pairs[0]
    out = parse_annotation(_task(mask), _annotation([brush_result(mask)]), project_id=1)
    assert not out.valid and out.message == "no decision chosen"


def test_reject_with_an_empty_mask_is_invalid(real_pairs):
    _, _, mask = real_pairs[0]
    out = parse_annotation(_task(mask), _annotation([_choice("reject")]), project_id=1)
    assert not out.valid
    assert out.message == "decision 'reject' needs a lung mask but the mask is empty; paint it or choose another"
    erased = parse_annotation(_task(mask), _annotation([_choice("reject"), brush_result(np.zeros_like(mask))]),
                              project_id=1)
    assert not erased.valid and "mask is empty" in erased.message


def test_malformed_rle_is_invalid_not_a_crash(real_pairs):
    _, _, mask = real_pairs[0]
    bad = brush_result(mask)
    bad["value"]["rle"] = bad["value"]["rle"][: len(bad["value"]["rle"]) // 3]
    out = parse_annotation(_task(mask), _annotation([_choice("reject"), bad]), project_id=1)
    assert not out.valid and out.message.startswith("unreadable mask: ") and out.mask is None


def test_region_of_another_size_is_invalid(real_pairs):
    _, _, mask = real_pairs[0]
    _, _, other = real_pairs[2]
    out = parse_annotation(_task(mask), _annotation([_choice("reject"), brush_result(other)]), project_id=1)
    h, w = mask.shape
    oh, ow = other.shape
    assert not out.valid
    assert f"is {ow}x{oh} but the image is {w}x{h}" in out.message


def test_skipped_and_unknown_decisions_are_invalid(real_pairs):
    _, _, mask = real_pairs[0]
    skipped = parse_annotation(_task(mask), _annotation([], was_cancelled=True), project_id=1)
    assert not skipped.valid and "skipped" in skipped.message
    foreign = parse_annotation(_task(mask), _annotation([_choice("verified")]), project_id=1)
    assert not foreign.valid
    assert foreign.message == "decision 'verified' is not one of queue ra_review's: accept, reject, unsure, exclude"


def test_md_advice_text_and_best_of_six_selection(real_pairs):
    _, _, mask = real_pairs[0]
    advice = parse_annotation(_task(mask, "md_advice"), _annotation([_choice("adjust"), _comment("add the apex", "advice")]),
                              project_id=4)
    assert advice.valid and advice.decision == "adjust" and advice.comment == "add the apex"
    task = _task(mask, "best_of_six")
    task["predictions"] = []
    pick = parse_annotation(task, _annotation([_choice("m3")], parent_prediction=None), project_id=5)
    assert pick.valid and pick.decision == "m3" and pick.mask is None and pick.model_version is None


def test_parse_tasks_orders_by_task_then_annotation(real_pairs):
    _, _, mask = real_pairs[0]
    late = _task(mask, annotations=[_annotation([_choice("unsure")], ann_id=9), _annotation([_choice("accept")], ann_id=8)],
                 task_id=20)
    early = _task(mask, annotations=[_annotation([_choice("exclude")], ann_id=30)], task_id=3)
    outs = parse_tasks([late, early], project_id=1)
    assert [(o.ls_task_id, o.ls_annotation_id, o.decision) for o in outs] == [
        (3, 30, "exclude"), (20, 8, "accept"), (20, 9, "unsure")]


def test_lung_mask_ignores_other_labels_and_tags(real_pairs):
    _, _, mask = real_pairs[0]
    h, w = mask.shape
    other = brush_result(mask)
    other["value"]["brushlabels"] = ["Infection"]
    assert lung_mask([other, _choice("accept")], h, w) is None
    rle = mask_to_rle(mask)
    assert lung_mask([{"type": "brushlabels", "from_name": "mask", "original_width": w, "original_height": h,
                       "value": {"format": "rle", "rle": rle, "brushlabels": ["Lung"]}}], h, w).sum() == mask.sum()


def test_brush_result_keeps_the_image_size(real_pairs):
    _, _, mask = real_pairs[2]
    result = brush_result(mask)
    assert (result["original_height"], result["original_width"]) == mask.shape
    assert result["value"]["brushlabels"] == ["Lung"] and result["type"] == "brushlabels"


@pytest.mark.parametrize("queue", ["md_verify", "ra_adjust"])
def test_mask_required_queues(real_pairs, queue):
    _, _, mask = real_pairs[0]
    choice = "verified" if queue == "md_verify" else "adjusted"
    ok = parse_annotation(_task(mask, queue), _annotation([_choice(choice), brush_result(mask)]), project_id=1)
    empty = parse_annotation(_task(mask, queue), _annotation([_choice(choice)]), project_id=1)
    assert ok.valid and not empty.valid
