"""The store on a real SQLite workspace with real sample images: mask versions written content-addressed,
read back exactly, a file of the wrong size refused with the file named."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from annotator.errors import MaskError
from annotator.imaging.io import read_image, read_mask, write_mask
from annotator.ingest.importer import import_items
from annotator.ingest.layouts import ImportItem, read_manifest
from annotator.store import add_mask, image_file, image_pixels, read_mask_by_id, read_mask_of
from db.engine import session_scope
from db.models import Image, Mask


@pytest.fixture
def two_images(workspace, sample_data):
    """Two real CXRs with their lung masks, imported."""
    items = [i for i in read_manifest(sample_data) if isinstance(i, ImportItem) and i.lung_mask_path][:2]
    with session_scope(workspace.database_url) as session:
        assert import_items(session, workspace, items, "manifest").ok
    return workspace, items


def test_pixels_and_seed_masks_read_back_as_imported(two_images):
    settings, items = two_images
    with session_scope(settings.database_url) as session:
        images = session.scalars(select(Image).order_by(Image.id)).all()
        for image, item in zip(images, items, strict=True):
            pixels = image_pixels(settings, image)
            assert pixels.shape == (image.height, image.width) and pixels.dtype == np.uint8
            assert np.array_equal(pixels, read_image(item.image_path))
            assert image_file(settings, image) == settings.workspace_path / image.store_path
            seed = session.scalar(select(Mask).where(Mask.image_id == image.id, Mask.kind == "lung"))
            expected = read_mask(item.lung_mask_path, pixels.shape)
            assert np.array_equal(read_mask_of(settings, seed), expected)
            assert np.array_equal(read_mask_by_id(session, settings, seed.id), expected)


def test_add_mask_versions_and_reads_back_exactly(two_images):
    settings, _ = two_images
    with session_scope(settings.database_url) as session:
        image = session.scalars(select(Image).order_by(Image.id)).first()
        drawn = np.zeros((image.height, image.width), np.uint8)
        drawn[10:40, 5:30] = 1  # a 0/1 mask is stored as 0/255
        row = add_mask(session, settings, image, "lung", drawn, origin="ra_edited", author="ra1")
        assert row.version == 2 and row.origin == "ra_edited" and row.author == "ra1"
        back = read_mask_of(settings, row)
        assert back.dtype == np.uint8 and int(back.sum()) == 30 * 25 * 255
        assert add_mask(session, settings, image, "lung", drawn * 255, origin="model") is None  # same file
        again = add_mask(session, settings, image, "lung", drawn, origin="md_corrected", skip_if_same=False)
        assert again.version == 3 and again.store_path == row.store_path


def test_a_mask_file_of_the_wrong_size_is_refused_naming_it(two_images):
    settings, _ = two_images
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(Mask).order_by(Mask.id)).first()
        path = settings.workspace_path / row.store_path
        write_mask(path, np.ones((7, 9), np.uint8))
        with pytest.raises(MaskError, match=r"mask is 9x7 but its image is"):
            read_mask_of(settings, row)
        with pytest.raises(MaskError, match="mask 999999 is not in the store"):
            read_mask_by_id(session, settings, 999999)
