"""Fixtures: the real sample set, and a small workspace imported from it with the real importer."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

from annotator.config import find_sample_data, load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# A small, fixed subset per class (first images of each class in manifest order, plus every image with an
# infection mask and some with expert severity scores): enough to run every step in seconds. The tuberculosis
# images are Montgomery's: Stage I's seed set (Table 3).
SUBSET_PER_CLASS = {"covid": 16, "non_covid_pneumonia": 10, "normal": 10, "sars": 6, "mers": 1, "tuberculosis": 6}


@pytest.fixture(scope="session")
def sample_root():
    root = find_sample_data()
    if root is None:
        pytest.skip("the sample CXR set (shared/data/cxr or $ANNOTATOR_SAMPLE_DATA) is not available")
    return root


def subset_items(root, per_class=SUBSET_PER_CLASS):
    from annotator.ingest.importer import list_items

    taken = defaultdict(int)
    scored = 0
    out = []
    for item in list_items(root, "manifest"):
        cls = getattr(item, "cls", None)
        if cls not in per_class:
            continue
        has_score = "severity_opacity_mean" in item.attributes
        wanted = item.infection_mask_path is not None or (has_score and scored < 8)
        if taken[cls] < per_class[cls] or wanted:
            taken[cls] += 1
            scored += has_score
            out.append(item)
    return out


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory, sample_root):
    """Settings of a workspace holding ~90 real images (with their lung and infection masks)."""
    from annotator.ingest.importer import import_items
    from annotator.workspace import init_workspace
    from db.engine import session_scope

    ws = tmp_path_factory.mktemp("recognition-ws")
    settings = load_settings(workspace=ws)
    init_workspace(settings)
    with session_scope(settings.database_url) as session:
        summary = import_items(session, settings, subset_items(sample_root), "manifest")
    assert not summary.failures, summary.failures
    return settings
