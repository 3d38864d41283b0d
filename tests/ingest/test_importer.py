"""Importer details: content-addressed store, re-import repairs a lost store file, seed lineage."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from annotator.imaging.io import file_sha256, read_image
from annotator.ingest.importer import import_collection
from annotator.ingest.validate import validate_store
from db.engine import session_scope
from db.models import Image, Mask


def test_store_is_content_addressed_and_lineage_is_seed(workspace, tmp_path, sample_data, rows_where,
                                                        manifest_collection):
    rows = rows_where(3, dataset="COVID-QU-Ex")
    root = manifest_collection(tmp_path / "col", rows)
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, root, "manifest")
        assert summary.ok
        for row in rows:
            image = session.scalar(select(Image).where(Image.file_name == row["file"]))
            sha = file_sha256(sample_data / row["file"])
            assert image.sha256 == sha and image.store_path == f"store/images/{sha[:2]}/{sha}.jpg"
            assert (image.width, image.height) == (int(row["width"]), int(row["height"]))
            assert (image.cls, image.dataset, image.state) == (row["class"], "COVID-QU-Ex", "pool")
            assert image.attributes["lung_mask_origin"] == row["lung_mask_origin"]
            np.testing.assert_array_equal(read_image(workspace.workspace_path / image.store_path),
                                          read_image(sample_data / row["file"]))
            masks = session.scalars(select(Mask).where(Mask.image_id == image.id).order_by(Mask.kind)).all()
            assert [(m.kind, m.version, m.origin, m.author) for m in masks] == [
                ("infection", 1, "seed", "import:manifest"), ("lung", 1, "seed", "import:manifest")]
            for m in masks:
                assert file_sha256(workspace.workspace_path / m.store_path) == m.file_hash
                assert m.store_path.startswith(f"store/masks/{m.kind}/{sha[:2]}/{sha}-")


def test_reimport_restores_a_lost_store_file(workspace, tmp_path, rows_where, manifest_collection):
    root = manifest_collection(tmp_path / "col", rows_where(2, dataset="Shenzhen", lung_mask_file=True))
    with session_scope(workspace.database_url) as session:
        import_collection(session, workspace, root, "manifest")
        lost = workspace.workspace_path / session.scalar(select(Image.store_path).order_by(Image.id))
    lost.unlink()
    with session_scope(workspace.database_url) as session:
        report = validate_store(session, workspace)
    ((where, reason),) = report.problems
    assert where.startswith("image 1 (") and reason == f"{lost}: file missing (re-import its collection to restore it)"
    with session_scope(workspace.database_url) as session:
        summary = import_collection(session, workspace, root, "manifest")
        assert (summary.images_added, summary.images_known) == (0, 2)
        assert lost.is_file()
        report = validate_store(session, workspace)
    assert (report.images, report.masks, report.problems) == (2, 2, [])
