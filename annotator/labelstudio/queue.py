"""The five kinds of Label Studio work (queues): their label configs, decisions and what they carry.

One registry, filled here; ``get_queue`` raises an error that lists the valid names. The XML files live in
``configs/<name>.xml`` (choices above the image, so they stay visible on a small screen).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from annotator.errors import UnknownNameError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

IMAGE_TAG = "image"  # <Image name=...>; every queue's task data holds the image URL under "image"
DECISION_TAG = "decision"  # <Choices name=...>
BRUSH_TAG = "mask"  # <BrushLabels name=...>
LUNG_LABEL = "Lung"


@dataclass(frozen=True)
class QueueSpec:
    """One kind of work: the label config and the decisions a person can take in it."""

    name: str
    title: str
    role: str  # "RA" | "MD"
    decisions: tuple[str, ...]
    text_tag: str | None  # the TextArea name read back as the comment ("comment" or "advice")
    has_brush: bool = True
    # decisions that need a non-empty brush mask (else the annotation is invalid)
    mask_required_for: tuple[str, ...] = ()
    # task data fields (beside image and our keys) the config shows; import checks they are given
    data_fields: tuple[str, ...] = ()

    @cached_property
    def label_config(self) -> str:
        return (CONFIG_DIR / f"{self.name}.xml").read_text()


QUEUES: dict[str, QueueSpec] = {
    q.name: q
    for q in (
        QueueSpec(
            "ra_review", "RA review", "RA", ("accept", "reject", "unsure", "exclude"), "comment",
            mask_required_for=("reject",),
        ),
        QueueSpec(
            "md_advice", "MD advice", "MD", ("accept", "adjust", "exclude"), "advice", data_fields=("ra_case",),
        ),
        QueueSpec(
            "ra_adjust", "RA adjust", "RA", ("adjusted", "unsure"), "comment",
            mask_required_for=("adjusted",), data_fields=("advice",),
        ),
        QueueSpec(
            "best_of_six", "Best of six", "MD", ("m1", "m2", "m3", "m4", "m5", "m6", "deny"), "comment",
            has_brush=False,
        ),
        QueueSpec(
            "md_verify", "MD verification", "MD", ("verified", "corrected"), "comment",
            mask_required_for=("verified", "corrected"),
        ),
    )
}


def get_queue(name: str) -> QueueSpec:
    try:
        return QUEUES[name]
    except KeyError:
        raise UnknownNameError("queue", name, QUEUES) from None
