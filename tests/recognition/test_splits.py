"""Study II's splits: Stage IV's verified test set and the protocol's train/val when the workspace has them,
a stated patient-grouped cut otherwise. A real workspace with real imported images and split rows."""

from __future__ import annotations

import pytest

from annotator.recognition.config import load_pipeline_config
from annotator.recognition.dataset import samples_from_store
from annotator.recognition.steps.context import choose_test_split, start_run
from db.engine import session_scope
from db.models import SplitMember


@pytest.fixture(scope="module")
def protocol_workspace(tmp_path_factory, sample_root):
    from annotator.config import load_settings
    from annotator.ingest.importer import import_items
    from annotator.workspace import init_workspace
    from tests.recognition.conftest import subset_items

    settings = load_settings(workspace=tmp_path_factory.mktemp("protocol-ws"))
    init_workspace(settings)
    with session_scope(settings.database_url) as session:
        import_items(session, settings, subset_items(sample_root, {"covid": 10, "non_covid_pneumonia": 10, "normal": 10}),
                     "manifest")
    return settings


def _assign(settings, every: int) -> dict[str, set[str]]:
    """Protocol rows: every ``every``-th image test, the next one val, the rest train."""
    from sqlalchemy import delete, select

    from db.models import Image

    out: dict[str, set[str]] = {"test": set(), "val": set(), "train": set()}
    with session_scope(settings.database_url) as session:
        session.execute(delete(SplitMember))
        for k, image_id in enumerate(session.scalars(select(Image.id).order_by(Image.id))):
            split = "test" if k % every == 0 else "val" if k % every == 1 else "train"
            session.add(SplitMember(image_id=image_id, name="protocol", split=split))
            out[split].add(str(image_id))
    return out


def test_the_protocols_test_and_train_val_splits_are_used(protocol_workspace, tmp_path):
    settings = protocol_workspace
    rows = _assign(settings, 5)
    config = load_pipeline_config("tiny")
    with session_scope(settings.database_url) as session:
        samples = samples_from_store(session, settings)
    keys, note = choose_test_split(samples, config)
    assert keys == rows["test"] and f"Stage IV's verified set, {len(rows['test'])} images" in note
    ctx = start_run(settings, config, samples, tmp_path / "report", progress=False, echo=lambda _m: None)
    fit, val = ctx.fit_validation([s for s in samples if not ctx.is_test(s)])
    assert {s.key for s in fit} == rows["train"] and {s.key for s in val} == rows["val"]
    prov = ctx.report.results["provenance"]["splits"]
    assert prov["test"]["n"] == len(rows["test"]) and len(prov["test"]["image_ids_sha256"]) == 64


def test_without_a_protocol_split_a_stated_patient_grouped_cut(protocol_workspace, tmp_path):
    settings = protocol_workspace
    with session_scope(settings.database_url) as session:
        from sqlalchemy import delete

        session.execute(delete(SplitMember))
    with session_scope(settings.database_url) as session:
        samples = samples_from_store(session, settings)
    config = load_pipeline_config("tiny")
    keys, note = choose_test_split(samples, config)
    assert "no verified (Stage IV) test set" in note and f"hold-out of {len(keys)} of {len(samples)}" in note
    ctx = start_run(settings, config, samples, tmp_path / "report", progress=False, echo=lambda _m: None)
    train = [s for s in samples if not ctx.is_test(s)]
    fit, val = ctx.fit_validation(train)
    assert len(fit) + len(val) == len(train) and val
    assert not {s.group for s in fit} & {s.group for s in val}  # no patient on both sides
    assert not {s.group for s in train} & {s.group for s in samples if ctx.is_test(s)}


def test_the_three_class_scheme_sorts_every_finding_and_study1_keeps_its_own():
    from pathlib import Path

    from annotator.errors import TrainingError
    from annotator.recognition.config import CLASS_SCHEMES
    from annotator.recognition.dataset import Sample, select_scheme

    found = ["covid", "sars", "mers", "tuberculosis", "non_covid_pneumonia", "normal", None]
    samples = [Sample(key=str(i), image_path=Path(f"{i}.png"), cls=c, group=str(i)) for i, c in enumerate(found)]
    items, labels = select_scheme(samples, CLASS_SCHEMES["covid-pneumonia-normal"], "covid-pneumonia-normal")
    assert [s.key for s in items] == ["0", "1", "2", "3", "4", "5"]  # every image with a finding
    assert [s.cls for s in items] == ["covid"] + ["non_covid_pneumonia"] * 4 + ["normal"]
    assert labels == [0, 1, 1, 1, 1, 2]
    assert samples[1].cls == "sars"  # the store's own label is left as it is
    items, labels = select_scheme(samples, CLASS_SCHEMES["covid-sars-mers"], "covid-sars-mers")
    assert [s.cls for s in items] == ["covid", "sars", "mers"] and labels == [0, 1, 2]
    with pytest.raises(TrainingError, match=r"needs classes .* no \['mers'\]"):
        select_scheme(samples[:2], CLASS_SCHEMES["covid-sars-mers"], "covid-sars-mers")
