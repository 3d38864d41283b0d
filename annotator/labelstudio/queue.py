"""The five kinds of Label Studio work (queues): their names, who works them, their label configs,
decisions and what they carry.

One registry, filled here; ``get_queue`` raises an error that lists the valid names. The XML files live in
``configs/<name>.xml`` (choices above the image, so they stay visible on a small screen). ``QueueSpec.role``
is the one place that says who works a queue (the protocol's handlers are checked against it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from annotator.errors import UnknownNameError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

IMAGE_TAG = "image"  # <Image name=...>; every queue's task data holds the image URL under "image"
DECISION_TAG = "decision"  # <Choices name=...>
BRUSH_TAG = "mask"  # <BrushLabels name=...>
LUNG_LABEL = "Lung"


class Queue(StrEnum):
    """The queues, in the protocol's order; the values are what the ``tasks.queue`` column stores."""

    RA_REVIEW = "ra_review"
    MD_ADVICE = "md_advice"
    RA_ADJUST = "ra_adjust"
    BEST_OF_SIX = "best_of_six"
    MD_VERIFY = "md_verify"


@dataclass(frozen=True)
class QueueSpec:
    """One kind of work: the label config and the decisions a person can take in it."""

    name: Queue
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

    @cached_property
    def choices(self) -> tuple[str, ...]:
        """The decision choices the label config offers, in its order."""
        root = ET.fromstring(self.label_config)
        return tuple(c.get("value") for tag in root.iter("Choices") if tag.get("name") == DECISION_TAG
                     for c in tag.iter("Choice"))


QUEUES: dict[Queue, QueueSpec] = {
    q.name: q
    for q in (
        QueueSpec(
            Queue.RA_REVIEW, "RA review", "RA", ("accept", "reject", "unsure", "exclude"), "comment",
            mask_required_for=("reject",),
        ),
        QueueSpec(
            Queue.MD_ADVICE, "MD advice", "MD", ("accept", "adjust", "exclude"), "advice", data_fields=("ra_case",),
        ),
        QueueSpec(
            # no "unsure" here: the doubt was raised at review and the MD has advised; an RA who still
            # doubts says so in the comment (the protocol has no second round of advice)
            Queue.RA_ADJUST, "RA adjust", "RA", ("adjusted",), "comment",
            mask_required_for=("adjusted",), data_fields=("advice",),
        ),
        QueueSpec(
            Queue.BEST_OF_SIX, "Best of six", "RA", ("m1", "m2", "m3", "m4", "m5", "m6", "deny"), "comment",
            has_brush=False,
        ),
        QueueSpec(
            Queue.MD_VERIFY, "MD verification", "MD", ("verified", "corrected"), "comment",
            mask_required_for=("verified", "corrected"),
        ),
    )
}


def get_queue(name: str | Queue) -> QueueSpec:
    try:
        return QUEUES[name]
    except KeyError:
        raise UnknownNameError("queue", name, QUEUES) from None
