"""Acting as a person through Label Studio's API: the campaign simulator's scripted RAs and MDs submit
annotations exactly as the browser would (choice, brush regions, text, lead time), so the read-back path
is the real one."""

from __future__ import annotations

import uuid

import numpy as np

from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.tasks import brush_result
from annotator.labelstudio.queue import DECISION_TAG, IMAGE_TAG, get_queue


def annotation_result(queue: str, decision: str, mask: np.ndarray | None = None, text: str | None = None) -> list[dict]:
    spec = get_queue(queue)
    result: list[dict] = [{
        "id": uuid.uuid4().hex[:10], "from_name": DECISION_TAG, "to_name": IMAGE_TAG, "type": "choices",
        "origin": "manual", "value": {"choices": [decision]},
    }]
    if mask is not None and spec.has_brush:
        region = brush_result(mask)
        region["origin"] = "manual"
        result.append(region)
    if text and spec.text_tag:
        result.append({"id": uuid.uuid4().hex[:10], "from_name": spec.text_tag, "to_name": IMAGE_TAG,
                       "type": "textarea", "origin": "manual", "value": {"text": [text]}})
    return result


def submit_annotation(ls: LabelStudio, ls_task_id: int, queue: str, decision: str, *, mask: np.ndarray | None = None,
                      text: str | None = None, lead_time_s: float | None = None,
                      parent_prediction: int | None = None) -> int:
    """Create an annotation on a task; returns its Label Studio id."""
    body: dict = {"result": annotation_result(queue, decision, mask, text), "was_cancelled": False,
                  "ground_truth": False}
    if lead_time_s is not None:
        body["lead_time"] = float(lead_time_s)
    if parent_prediction is not None:
        body["parent_prediction"] = int(parent_prediction)
    data = ls.request("POST", f"/api/tasks/{int(ls_task_id)}/annotations", json=body)
    return int(data["id"])


def task_prediction_ids(ls: LabelStudio, ls_task_id: int) -> list[int]:
    data = ls.request("GET", f"/api/tasks/{int(ls_task_id)}")
    return [int(p["id"]) if isinstance(p, dict) else int(p) for p in data.get("predictions") or []]
