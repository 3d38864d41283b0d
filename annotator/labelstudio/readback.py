"""Label Studio annotations -> domain decisions (``AnnotationOut``), decoded exactly.

``parse_tasks(exported_tasks, project_id, users)`` reads Label Studio's JSON export. Per annotation:
the choice of the ``decision`` tag, the final mask (the union of every ``Lung`` brush region, each RLE
decoded at the image's size), the lead time, the annotator's e-mail, the parent prediction (id, its
``model_version`` and its mask), the comment (or the MD's advice) and ``updated_at``.

An annotation is *invalid* (``valid=False`` with a ``message``; the protocol keeps its task open) when it
has no decision, a decision that its queue does not know, was skipped, has a malformed or wrongly sized
RLE (or a size that is not a number), a lead time that is not a number of seconds, or has an empty mask
where the queue requires one (``reject`` in RA review). Whatever the JSON holds, parsing ends in an
``AnnotationOut`` or a ``LabelStudioError`` (no id to record it under), never another exception.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from annotator.errors import LabelStudioError, MaskError, UnknownNameError
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
    ls_user_id: int | None = None  # who made it (Label Studio's completed_by): the sync asks their role

    @property
    def edited(self) -> bool | None:
        """Did the person change the predicted mask? None when there is nothing to compare."""
        if self.mask is None or self.prediction_mask is None:
            return None
        return not np.array_equal(self.mask, self.prediction_mask)


def _int_or_none(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _str_or_none(value) -> str | None:
    return None if value is None or value == "" else str(value)


def _size(item: dict, key: str, fallback: int | None, region) -> int:
    """An image side a brush region states (or the task's), as a whole number; else a MaskError."""
    value = item.get(key)
    if value is None or value == "":
        return fallback or 0
    number = _int_or_none(value)
    if number is None or number <= 0 or number != value and str(number) != str(value).strip():
        raise MaskError(f"brush region {region} has {key} {value!r}, not a positive whole number")
    return number


def lung_mask(results: list[dict], height: int | None, width: int | None) -> np.ndarray | None:
    """The union of the Lung brush regions of a result list; None when there is none. Raises MaskError.

    A region's size must be the task's (when the task states one); its RLE header is checked against that
    size before anything is decoded (see ``rle_to_mask``).
    """
    out: np.ndarray | None = None
    for item in _list(results):
        if not isinstance(item, dict) or item.get("type") != "brushlabels" or item.get("from_name") != BRUSH_TAG:
            continue
        value = _dict(item.get("value"))
        region = _str_or_none(item.get("id"))
        labels = value.get("brushlabels")
        if not isinstance(labels, list):
            labels = [LUNG_LABEL] if labels is None else [labels]
        if LUNG_LABEL not in labels:
            continue
        if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
            raise MaskError(f"brush region {region} has no RLE (format {value.get('format')!r})")
        h = _size(item, "original_height", height, region)
        w = _size(item, "original_width", width, region)
        if height and width and (h, w) != (height, width):
            raise MaskError(f"brush region {region} is {w}x{h} but the image is {width}x{height}")
        if not h or not w:
            raise MaskError(f"brush region {region} does not say its image size")
        mask = rle_to_mask(value["rle"], h, w)
        out = mask if out is None else (out | mask)
    return out


def _choice(results: list) -> str | None:
    for item in results:
        if isinstance(item, dict) and item.get("type") == "choices" and item.get("from_name") == DECISION_TAG:
            choices = _dict(item.get("value")).get("choices")
            if isinstance(choices, str):
                choices = [choices]
            if isinstance(choices, list) and choices:
                return str(choices[0])
    return None


def _text(results: list, tag: str | None) -> str | None:
    if tag is None:
        return None
    texts: list[str] = []
    for item in results:
        if isinstance(item, dict) and item.get("type") == "textarea" and item.get("from_name") == tag:
            value = _dict(item.get("value")).get("text") or []
            texts.extend([value] if isinstance(value, str) else [str(v) for v in _list(value)])
    return "\n".join(t for t in texts if t) or None


def _annotator(completed_by, users: dict[int, str]) -> str | None:
    if isinstance(completed_by, dict):
        return _str_or_none(completed_by.get("email")) or _str_or_none(completed_by.get("id"))
    uid = _int_or_none(completed_by)
    return users.get(uid, str(uid)) if uid is not None else None


def _user_id(completed_by) -> int | None:
    return _int_or_none(completed_by.get("id") if isinstance(completed_by, dict) else completed_by)


def _lead_time(value, problems: list[str]) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        problems.append(f"lead_time {value!r} is not a number of seconds")
        return None
    return seconds


def _ids(task, annotation) -> tuple[int, int]:
    if not isinstance(task, dict) or not isinstance(annotation, dict):
        raise LabelStudioError(f"a task and its annotation must be JSON objects, not {type(task).__name__} and "
                               f"{type(annotation).__name__}")
    task_id, annotation_id = _int_or_none(task.get("id")), _int_or_none(annotation.get("id"))
    if task_id is None or annotation_id is None:
        raise LabelStudioError(f"annotation {annotation.get('id')!r} of task {task.get('id')!r} "
                               "has no whole-number id")
    return task_id, annotation_id


def parse_annotation(task: dict, annotation: dict, *, project_id: int, users: dict[int, str] | None = None) -> AnnotationOut:
    """One annotation as the protocol needs it. Whatever is wrong with its content makes it invalid (with a
    message); only a task or annotation without an id, which nothing could be recorded under, raises a
    LabelStudioError."""
    ls_task_id, ls_annotation_id = _ids(task, annotation)
    data = _dict(task.get("data"))
    queue_name = data.get("queue") if isinstance(data.get("queue"), str) else None
    height, width = _int_or_none(data.get("height")), _int_or_none(data.get("width"))
    results = _list(annotation.get("result"))
    predictions = {_int_or_none(p.get("id")): p for p in _list(task.get("predictions")) if isinstance(p, dict)}
    parent_id = _int_or_none(annotation.get("parent_prediction"))
    parent = predictions.get(parent_id) if parent_id is not None else None
    if parent is None and isinstance(annotation.get("prediction"), dict):  # the export embeds the parent
        parent = annotation["prediction"]
    problems: list[str] = []
    if annotation.get("result") is not None and not isinstance(annotation.get("result"), list):
        problems.append(f"result is a {type(annotation.get('result')).__name__}, not a list")

    spec = None
    try:
        spec = get_queue(queue_name) if queue_name else None
    except UnknownNameError as exc:
        problems.append(str(exc))
    if spec is None and not problems:
        problems.append(f"task {ls_task_id} carries no queue in its data (not imported by cxr-annotator?)")

    mask = prediction_mask = None
    try:
        mask = lung_mask(results, height, width)
    except MaskError as exc:
        problems.append(f"unreadable mask: {exc}")
    if parent is not None:
        try:
            prediction_mask = lung_mask(_list(parent.get("result")), height, width)
        except MaskError as exc:
            log.warning("task %s: prediction %s unreadable: %s", ls_task_id, parent_id, exc)

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
    lead_time_s = _lead_time(annotation.get("lead_time"), problems)

    return AnnotationOut(
        key=_str_or_none(data.get("annotator_key")),
        image_id=_int_or_none(data.get("image_id")),
        round_id=_int_or_none(data.get("round_id")),
        queue=queue_name if queue_name in QUEUES else None,
        ls_project_id=int(project_id),
        ls_task_id=ls_task_id,
        ls_annotation_id=ls_annotation_id,
        decision=decision,
        mask=mask,
        lead_time_s=lead_time_s,
        annotator=_annotator(annotation.get("completed_by"), users or {}),
        ls_prediction_id=parent_id,
        model_version=_str_or_none((parent or {}).get("model_version")),
        prediction_mask=prediction_mask,
        comment=_text(results, spec.text_tag if spec else "comment"),
        updated_at=_str_or_none(annotation.get("updated_at")),
        valid=not problems,
        message="; ".join(problems) or None,
        ls_user_id=_user_id(annotation.get("completed_by")),
    )


def _unreadable(task: dict, annotation: dict, project_id: int, exc: Exception) -> AnnotationOut | None:
    """An annotation that ``parse_annotation`` could not read at all, as an invalid AnnotationOut (so the
    sync quarantines it alone); None when even its ids are unreadable (then it cannot be keyed)."""
    task_id, annotation_id = _int_or_none(task.get("id")), _int_or_none(annotation.get("id"))
    if task_id is None or annotation_id is None:
        log.warning("project %s: an annotation without readable ids is ignored: %s", project_id, exc)
        return None
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    return AnnotationOut(key=None, image_id=_int_or_none(data.get("image_id")),
                         round_id=_int_or_none(data.get("round_id")), queue=None, ls_project_id=int(project_id),
                         ls_task_id=task_id, ls_annotation_id=annotation_id, decision=None, mask=None,
                         lead_time_s=None, annotator=None, ls_prediction_id=None,
                         model_version=None, prediction_mask=None, comment=None,
                         updated_at=str(annotation.get("updated_at")), valid=False,
                         message=f"unreadable annotation: {type(exc).__name__}: {exc}"[:500],
                         ls_user_id=_user_id(annotation.get("completed_by")))


def parse_tasks(tasks: list[dict], *, project_id: int, users: dict[int, str] | None = None) -> list[AnnotationOut]:
    """Every annotation of every exported task, oldest task first. An annotation without a usable id (Label
    Studio always gives one) cannot be recorded or quarantined: it is logged as a warning and left out."""
    out: list[AnnotationOut] = []
    ordered = sorted((t for t in _list(tasks) if isinstance(t, dict)), key=lambda t: _order(t.get("id")))
    for task in ordered:
        annotations = sorted((a for a in _list(task.get("annotations")) if isinstance(a, dict)),
                             key=lambda a: _order(a.get("id")))
        for annotation in annotations:
            try:
                out.append(parse_annotation(task, annotation, project_id=project_id, users=users))
            except LabelStudioError as exc:
                log.warning("left out: %s", exc)
            except Exception as exc:  # noqa: BLE001 - whatever else one annotation holds, it is quarantined alone
                unreadable = _unreadable(task, annotation, project_id, exc)
                if unreadable is not None:
                    out.append(unreadable)
    return out


def _order(value) -> tuple[int, int]:
    number = _int_or_none(value)
    return (0, number) if number is not None else (1, 0)
