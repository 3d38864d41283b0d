"""Stage IV's stratified sample and the patient-grouped train/val split."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from db.engine import session_scope
from db.models import Image
from workflows.splits import assign_splits, split_of, stratified_sample


def test_sample_is_a_stratified_fifth_and_splits_keep_patients_together(sample_workspace_copy):
    settings = sample_workspace_copy
    with session_scope(settings.database_url) as session:
        images = list(session.scalars(select(Image).order_by(Image.id)))
        chosen = stratified_sample(images, 0.2, seed=0)
        assert len(chosen) == round(0.2 * len(images)) == 184
        by_class_all = Counter(i.cls for i in images)
        by_class = Counter(i.cls for i in images if i.id in set(chosen))
        for cls, n in by_class_all.items():  # proportional within a couple of images per class
            assert abs(by_class[cls] - 0.2 * n) <= 3 + 0.05 * n, (cls, by_class[cls], n)
        assert by_class["mers"] == 1  # even the one-image class is covered
        rest = {i.id for i in images} - set(chosen)
        counts = assign_splits(session, set(chosen), rest, val_share=0.2, seed=0)
        assert counts["test"] == 184 and counts["train"] + counts["val"] == len(rest)
        assert abs(counts["val"] - 0.2 * len(rest)) < 15
        splits = split_of(session)
        patients: dict[str, set[str]] = {}
        for image in images:
            if image.patient_id and splits[image.id] in ("train", "val"):
                patients.setdefault(image.patient_id, set()).add(splits[image.id])
        assert patients and all(len(s) == 1 for s in patients.values())
        again = assign_splits(session, set(chosen), rest, val_share=0.2, seed=0)  # replaces, never duplicates
        assert again == counts and len(split_of(session)) == len(images)
