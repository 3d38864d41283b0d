"""Label Studio annotations -> domain decisions (``AnnotationOut``), decoded exactly.

``parse_tasks(exported_tasks, project_id, users)`` reads Label Studio's JSON export. Per annotation:
the choice of the ``decision`` tag, the final mask (the union of every ``Lung`` brush region, each RLE
decoded at the image's size), the lead time, the annotator's e-mail, the parent prediction (id, its
``model_version`` and its mask), the comment (or the MD's advice) and ``updated_at``.

An annotation is *invalid* (``valid=False`` with a ``message``; the protocol keeps its task open) when it
has no decision, a decision that its queue does not know, was skipped, has a malformed or wrongly sized
RLE, or has an empty mask where the queue requires one (``reject`` in RA review).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from annotator.errors import MaskError, UnknownNameError
from annotator.imaging.rle import rle_to_mask
from annotator.labelstudio.queue import BRUSH_TAG, DECISION_TAG, LUNG_LABEL, QUEUES, get_queue

log = logging.getLogger(__name__)


@dataclass
class AnnotationOut:
    """One person's annotation of one task, as the protocol needs it."""

    key: str | None  # our task key "<queue>:<round_id>:<image_id>"
    image_id: int | None
    round_id: int | None
    queue: str | None
    ls_project_id: int
    ls_task_id: int
    ls_annotation_id: int
    decision: str | None
    mask: np.ndarray | None = field(repr=False)  # HxW {0,255}: union of the Lung regions; None if none
    lead_time_s: float | None
    annotator: str | None
    ls_prediction_id: int | None  # the parent prediction the person started from
    model_version: str | None  # of that prediction
    prediction_mask: np.ndarray | None = field(repr=False)
    comment: str | None  # the comment, or the MD's advice in md_advice
    updated_at: str | None
    valid: bool = True
    message: str | None = None

    @property
    def edited(self) -> bool | None:
        """Did the person change the predicted mask? None when there is nothing to compare."""
        if self.mask is None or self.prediction_mask is None:
            return None
        return not np.array_equal(self.mask, self.prediction_mask)


def _int_or_none(value) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def lung_mask(results: list[dict], height: int | None, width: int | None) -> np.ndarray | None:
    """The union of the Lung brush regions of a result list; None when there is none. Raises MaskError."""
    out: np.ndarray | None = None
    for item in results:
        if item.get("type") != "brushlabels" or item.get("from_name") != BRUSH_TAG:
            continue
        value = item.get("value") or {}
        if LUNG_LABEL not in (value.get("brushlabels") or [LUNG_LABEL]):
            continue
        if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
            raise MaskError(f"brush region {item.get('id')} has no RLE (format {value.get('format')!r})")
        h = int(item.get("original_height") or height or 0)
        w = int(item.get("original_width") or width or 0)
        if height and width and (h, w) != (height, width):
            raise MaskError(f"brush region {item.get('id')} is {w}x{h} but the image is {width}x{height}")
        if not h or not w:
            raise MaskError(f"brush region {item.get('id')} does not say its image size")
        region = rle_to_mask(value["rle"], h, w)
        out = region if out is None else (out | region)
    return out


def _choice(results: list[dict]) -> str | None:
    for item in results:
        if item.get("type") == "choices" and item.get("from_name") == DECISION_TAG:
            choices = (item.get("value") or {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None


def _text(results: list[dict], tag: str | None) -> str | None:
    if tag is None:
        return None
    texts: list[str] = []
    for item in results:
        if item.get("type") == "textarea" and item.get("from_name") == tag:
            value = (item.get("value") or {}).get("text") or []
            texts.extend([value] if isinstance(value, str) else [str(v) for v in value])
    return "\n".join(t for t in texts if t) or None


def _annotator(completed_by, users: dict[int, str]) -> str | None:
    if isinstance(completed_by, dict):
        return completed_by.get("email") or str(completed_by.get("id"))
    uid = _int_or_none(completed_by)
    return users.get(uid, str(uid)) if uid is not None else None


def parse_annotation(task: dict, annotation: dict, *, project_id: int, users: dict[int, str] | None = None) -> AnnotationOut:
    data = task.get("data") or {}
    queue_name = data.get("queue")
    height, width = _int_or_none(data.get("height")), _int_or_none(data.get("width"))
    results = annotation.get("result") or []
    predictions = {int(p["id"]): p for p in task.get("predictions") or [] if isinstance(p, dict) and "id" in p}
    parent_id = _int_or_none(annotation.get("parent_prediction"))
    parent = predictions.get(parent_id) if parent_id is not None else None
    if parent is None and isinstance(annotation.get("prediction"), dict):  # the export embeds the parent
        parent = annotation["prediction"]
    problems: list[str] = []

    spec = None
    try:
        spec = get_queue(queue_name) if queue_name else None
    except UnknownNameError as exc:
        problems.append(str(exc))
    if spec is None and not problems:
        problems.append(f"task {task.get('id')} carries no queue in its data (not imported by cxr-annotator?)")

    mask = prediction_mask = None
    try:
        mask = lung_mask(results, height, width)
    except MaskError as exc:
        problems.append(f"unreadable mask: {exc}")
    if parent is not None:
        try:
            prediction_mask = lung_mask(parent.get("result") or [], height, width)
        except MaskError as exc:
            log.warning("task %s: prediction %s unreadable: %s", task.get("id"), parent_id, exc)

    decision = _choice(results)
    if annotation.get("was_cancelled"):
        problems.append("the task was skipped (cancelled), no decision")
    elif decision is None:
        problems.append("no decision chosen")
    elif spec is not None and decision not in spec.decisions:
        problems.append(f"decision {decision!r} is not one of queue {spec.name}'s: {', '.join(spec.decisions)}")
    if spec is not None and decision in spec.mask_required_for and not problems:
        if mask is None or not mask.any():
            problems.append(f"decision {decision!r} needs a lung mask but the mask is empty; paint it or choose another")

    lead = annotation.get("lead_time")
    return AnnotationOut(
        key=data.get("annotator_key"),
        image_id=_int_or_none(data.get("image_id")),
        round_id=_int_or_none(data.get("round_id")),
        queue=queue_name if queue_name in QUEUES else None,
        ls_project_id=int(project_id),
        ls_task_id=int(task["id"]),
        ls_annotation_id=int(annotation["id"]),
        decision=decision,
        mask=mask,
        lead_time_s=float(lead) if lead is not None else None,
        annotator=_annotator(annotation.get("completed_by"), users or {}),
        ls_prediction_id=parent_id,
        model_version=(parent or {}).get("model_version"),
        prediction_mask=prediction_mask,
        comment=_text(results, spec.text_tag if spec else "comment"),
        updated_at=annotation.get("updated_at"),
        valid=not problems,
        message="; ".join(problems) or None,
    )


def parse_tasks(tasks: list[dict], *, project_id: int, users: dict[int, str] | None = None) -> list[AnnotationOut]:
    """Every annotation of every exported task, oldest task first."""
    out: list[AnnotationOut] = []
    for task in sorted(tasks, key=lambda t: int(t["id"])):
        for annotation in sorted(task.get("annotations") or [], key=lambda a: int(a["id"])):
            out.append(parse_annotation(task, annotation, project_id=project_id, users=users))
    return out
