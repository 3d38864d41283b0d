from collections import Counter

import numpy as np

from annotator.recognition.augmentation import IDENTITY, MAX_SHIFT, ROTATIONS_DEG, Augmentation, augment, balance_plan


def test_balance_plan_tops_minority_classes_up_to_the_largest():
    labels = [0] * 10 + [1] * 3 + [2] * 1
    plan = balance_plan(labels, seed=1)
    counts = Counter(labels[i] for i, _ in plan)
    assert counts == {0: 10, 1: 10, 2: 10}
    originals = [p for p in plan if p[1] is IDENTITY]
    assert len(originals) == 14  # every original exactly once
    for _, aug in plan[14:]:
        assert abs(aug.angle_deg) in ROTATIONS_DEG
        assert abs(aug.shift_x) <= MAX_SHIFT and abs(aug.shift_y) <= MAX_SHIFT


def test_balance_plan_is_deterministic_and_capped():
    labels = [0] * 8 + [1] * 2
    assert balance_plan(labels, seed=3) == balance_plan(labels, seed=3)
    capped = balance_plan(labels, seed=3, cap=5)
    assert Counter(labels[i] for i, _ in capped) == {0: 8, 1: 5}


def test_augment_rotates_and_shifts_a_real_image(sample_root):
    from annotator.imaging.io import read_image

    image = read_image(sample_root / "images/normal/quex_Normal_1.jpg")
    assert augment(image, IDENTITY) is image
    w = image.shape[1]
    assert w == 256
    shifted = augment(image, Augmentation(0, 0.125, 0))  # exactly 32 px to the right
    assert shifted.shape == image.shape
    assert (shifted[:, :32] == 0).all()  # the left border is filled with 0
    np.testing.assert_array_equal(shifted[:, 32:], image[:, : w - 32])
    rotated = augment(np.dstack([image] * 3), Augmentation(10, 0, 0))
    assert rotated.shape == image.shape + (3,)
