"""The store on SQLite and on a real PostgreSQL server: migrations, constraints, mask versions, status."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from annotator.config import load_settings
from annotator.ingest.importer import import_collection
from annotator.status import collect_status
from annotator.store import add_mask
from annotator.workspace import init_workspace
from db.engine import create_db_engine, is_initialised, migrate, session_scope
from db.models import Base, Image, ImageSource, Mask, Model, Round, SplitMember

TABLES = {"images", "image_sources", "masks", "models", "rounds", "tasks", "decisions", "transitions", "splits",
          "alembic_version"}


def _image(sha: str, cls: str = "covid", dataset: str = "test", **kw) -> Image:
    return Image(sha256=sha, store_path=f"store/images/{sha}.png", file_name=f"{sha}.png", cls=cls, dataset=dataset,
                 width=4, height=3, bit_depth=8, resolution_bin="xs", contrast=0.1, snr=20.0, **kw)


def _heads(url):
    with create_db_engine(url).connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()


def test_migrate_creates_the_schema_and_twice_is_a_no_op(db_url):
    assert not is_initialised(db_url)
    migrate(db_url)
    tables = set(inspect(create_db_engine(db_url)).get_table_names())
    assert TABLES <= tables
    heads = _heads(db_url)
    assert len(heads) == 1
    migrate(db_url)
    create_db_engine(db_url).dispose()
    assert set(inspect(create_db_engine(db_url)).get_table_names()) == tables and _heads(db_url) == heads


def test_migrations_match_the_models(db_url):
    """Autogenerate finds nothing to do: the revisions create exactly what db/models.py declares."""
    migrate(db_url)
    with create_db_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_unique_constraints_hold(db_url):
    migrate(db_url)
    with session_scope(db_url) as session:
        image = _image("a" * 64)
        session.add(image)
        session.flush()
        session.add(Mask(image_id=image.id, kind="lung", version=1, origin="seed", store_path="m1", file_hash="h1"))
        session.add(ImageSource(image_id=image.id, original_path="/x/a.png", layout="folder"))
        session.add(Model(model_version="unet-r18-abc", spec="unet-resnet18", checkpoint_path="m.pt"))
        session.add(Round(stage=2, number=1, size=10, strategy="random"))
        session.add(SplitMember(image_id=image.id, name="protocol", split="train"))
    duplicates = [
        lambda s, i: _image("a" * 64),
        lambda s, i: Mask(image_id=i, kind="lung", version=1, origin="model", store_path="m2", file_hash="h2"),
        lambda s, i: ImageSource(image_id=i, original_path="/x/a.png", layout="manifest"),
        lambda s, i: Model(model_version="unet-r18-abc", spec="unet-resnet34", checkpoint_path="n.pt"),
        lambda s, i: Round(stage=2, number=1, size=5, strategy="uncertainty"),
        lambda s, i: SplitMember(image_id=i, name="protocol", split="test"),
    ]
    for make in duplicates:
        with pytest.raises(IntegrityError), session_scope(db_url) as session:
            image_id = session.scalar(select(Image.id))
            session.add(make(session, image_id))
            session.flush()
    with session_scope(db_url) as session:  # every refused row was rolled back; the originals stay
        assert session.scalar(select(func.count(Image.id))) == 1
        assert session.scalar(select(func.count(Mask.id))) == 1
        # the same version of the other kind is fine
        session.add(Mask(image_id=session.scalar(select(Image.id)), kind="infection", version=1, origin="seed",
                         store_path="i1", file_hash="h3"))


def test_foreign_keys_are_enforced(db_url):
    migrate(db_url)
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        session.add(Mask(image_id=12345, kind="lung", version=1, origin="seed", store_path="m", file_hash="h"))
        session.flush()


def test_mask_versions_increase_and_identical_masks_add_nothing(db_url, tmp_path):
    settings = load_settings(workspace=tmp_path / "ws", db_url=db_url)
    init_workspace(settings)
    first = np.zeros((3, 4), np.uint8)
    second = first.copy()
    second[1, 1] = 255
    third = second.copy()
    third[2, 3] = 255
    with session_scope(db_url) as session:
        image = _image("b" * 64)
        session.add(image)
        session.flush()
        versions = [add_mask(session, settings, image, "lung", m, origin=o).version
                    for m, o in ((first, "seed"), (second, "model"), (third, "ra_edited"))]
        assert versions == [1, 2, 3]
        assert add_mask(session, settings, image, "lung", second, origin="model") is None
        again = add_mask(session, settings, image, "lung", second, origin="md_corrected", skip_if_same=False)
        assert again.version == 4
        assert add_mask(session, settings, image, "infection", first, origin="seed").version == 1
    with session_scope(db_url) as session:
        rows = session.execute(select(Mask.kind, Mask.version, Mask.origin).order_by(Mask.kind, Mask.version)).all()
        assert [tuple(r) for r in rows] == [("infection", 1, "seed"), ("lung", 1, "seed"), ("lung", 2, "model"),
                                            ("lung", 3, "ra_edited"), ("lung", 4, "md_corrected")]
        report = collect_status(session)
    assert report["masks"] == {"lung": 1, "infection": 1}  # images having a mask of the kind
    assert report["mask_versions"] == {"lung": 4, "infection": 1}
    assert report["lung_masks_current_origin"] == {"md_corrected": 1}
    assert report["masks_by_origin"]["lung"] == {"seed": 1, "model": 1, "ra_edited": 1, "md_corrected": 1}


def test_session_scope_rolls_back_on_error(db_url):
    migrate(db_url)
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        session.add(_image("c" * 64))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count(Image.id))) == 0


def test_import_and_status_counts(db_url, tmp_path, sample_data):
    """A slice of the sample set (manifest layout, every dataset) imported; status matches its manifest."""
    import shutil

    with (sample_data / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    chosen = rows[::23]  # 41 rows
    root = tmp_path / "col"
    for row in chosen:
        for column in ("file", "lung_mask_file", "infection_mask_file"):
            if row[column]:
                (root / row[column]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sample_data / row[column], root / row[column])
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    settings = load_settings(workspace=tmp_path / "ws", db_url=db_url)
    init_workspace(settings)
    for run in (1, 2):
        with session_scope(db_url) as session:
            summary = import_collection(session, settings, root, "manifest")
            report = collect_status(session)
        assert summary.ok and summary.images_added == (len(chosen) if run == 1 else 0)
        by_class: dict[str, int] = {}
        for row in chosen:
            by_class[row["class"]] = by_class.get(row["class"], 0) + 1
        assert report["images"] == len(chosen) == 41
        assert report["masks"] == {"lung": sum(bool(r["lung_mask_file"]) for r in chosen),
                                   "infection": sum(bool(r["infection_mask_file"]) for r in chosen)}
        assert report["by_class"] == by_class
        assert report["by_state"] == {"pool": 41}
        assert report["by_dataset"].keys() == {r["dataset"] for r in chosen}
        assert report["mask_versions"]["lung"] == report["masks"]["lung"]  # the re-run added no version


def test_savepoints_nest_inside_the_boundary_transaction(db_url):
    """An item's savepoint rolls back alone; the boundary's rollback undoes released savepoints too
    (on SQLite this needs the explicit BEGIN that db.engine issues before a savepoint)."""
    migrate(db_url)
    with session_scope(db_url) as session:
        session.add(_image("0" * 64))
        session.flush()
        with pytest.raises(ValueError), session.begin_nested():
            session.add(_image("1" * 64))
            session.flush()
            raise ValueError("one bad item")
        with session.begin_nested():
            session.add(_image("2" * 64))
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        with session.begin_nested():  # the first statement of the transaction
            session.add(_image("3" * 64))
        raise RuntimeError("the command failed after the item was released")
    with session_scope(db_url) as session:
        assert sorted(s[0] for s in session.scalars(select(Image.sha256))) == ["0", "2"]
