"""How the repository is weighed when the working network is retrained."""

from __future__ import annotations

import numpy as np

from workflows.retrain import MAX_REPEAT, RepositoryData


def _data(seed: int, collection: int) -> RepositoryData:
    pairs = [(np.full((4, 4), i, np.int32), np.zeros((4, 4), np.uint8)) for i in range(seed + collection)]
    flags = [True] * seed + [False] * collection
    ids = list(range(seed + collection))
    return RepositoryData(pairs, pairs[:1], ids, [0], ids, flags)


def test_collection_masks_are_repeated_until_they_weigh_like_the_seed():
    assert _data(300, 0).collection_repeat() == 1
    assert _data(300, 50).collection_repeat() == MAX_REPEAT == 3  # 6x fewer: capped
    assert _data(300, 150).collection_repeat() == 2
    assert _data(300, 400).collection_repeat() == 1
    pairs = _data(10, 4).training_pairs()  # 10 / 4 -> 2 (rounded), so 10 + 2 x 4
    assert len(pairs) == 18
    assert [int(img[0, 0]) for img, _ in pairs[10:]] == [10, 10, 11, 11, 12, 12, 13, 13]
