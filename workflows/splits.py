"""Stage IV's sample and the splits: a verification sample stratified over class, resolution, contrast and
SNR; verified images become the test split, the rest of the repository splits 80/20 into train/val,
grouped by patient so no patient is on both sides."""

from __future__ import annotations

import random
from collections import defaultdict

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import Image, SplitMember
from workflows.sampling import Candidate, allocate, strata

SPLIT_NAME = "protocol"


def stratified_sample(images: list[Image], fraction: float, seed: int = 0) -> list[int]:
    """Ids of a sample of ``fraction`` of the images, stratified over class x resolution x contrast x SNR."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    candidates = [Candidate(i.id, i.cls, None, i.resolution_bin, i.contrast, i.snr) for i in images]
    groups = strata(candidates)
    size = round(fraction * len(candidates))
    alloc = allocate({k: len(v) for k, v in groups.items()}, size, seed, cover=True)
    rng = random.Random(seed)
    chosen: list[int] = []
    for key in sorted(groups):
        chosen.extend(c.image_id for c in rng.sample(sorted(groups[key], key=lambda c: c.image_id), alloc[key]))
    return sorted(chosen)


def assign_splits(session: Session, test_ids: set[int], train_val_ids: set[int], val_share: float = 0.2,
                  seed: int = 0) -> dict[str, int]:
    """Store the protocol's splits (replacing earlier ones): test as given, the rest by patient groups."""
    session.execute(delete(SplitMember).where(SplitMember.name == SPLIT_NAME))
    images = {i.id: i for i in session.scalars(select(Image).where(Image.id.in_(test_ids | train_val_ids)))}
    groups: dict[str, list[int]] = defaultdict(list)
    for image_id in sorted(train_val_ids - test_ids):
        image = images[image_id]
        groups[image.patient_id or f"image-{image_id}"].append(image_id)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_val_target = round(val_share * sum(len(v) for v in groups.values()))
    val: set[int] = set()
    for key in keys:
        if len(val) >= n_val_target:
            break
        val.update(groups[key])
    counts = {"train": 0, "val": 0, "test": 0}
    for image_id in sorted(test_ids):
        session.add(SplitMember(image_id=image_id, name=SPLIT_NAME, split="test"))
        counts["test"] += 1
    for image_id in sorted(train_val_ids - test_ids):
        split = "val" if image_id in val else "train"
        session.add(SplitMember(image_id=image_id, name=SPLIT_NAME, split=split))
        counts[split] += 1
    session.flush()
    return counts


def split_of(session: Session, name: str = SPLIT_NAME) -> dict[int, str]:
    return dict(session.execute(select(SplitMember.image_id, SplitMember.split).where(SplitMember.name == name)).all())
