"""The workspace: one folder with the SQLite file, the image and mask store, originals, models, exports,
reports and its secrets. Only its owner may enter it (mode 0700): it holds patients' images and tokens."""

from __future__ import annotations

import os

from annotator.config import Settings
from annotator.credentials import ensure_secrets
from db.engine import is_initialised, migrate


def init_workspace(settings: Settings) -> bool:
    """Create the folders (the root 0700), random secrets once, and migrate the DB; True when it was new."""
    root = settings.workspace_path
    new = not (root / "annotator.db").exists() if settings.db_url is None else not is_initialised(settings.database_url)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    for path in (settings.image_store, settings.mask_store, settings.originals_path, settings.models_path,
                 settings.exports_path, settings.reports_path):
        path.mkdir(parents=True, exist_ok=True)
    ensure_secrets(root)
    migrate(settings.database_url)
    if not new:
        move_originals_out_of_store(settings)
    return new


def move_originals_out_of_store(settings: Settings) -> int:
    """Workspaces made before originals left the served store: move each original (a DICOM with its
    header...) from ``store/images/`` to ``originals/``; re-runnable after a crash. Returns how many moved."""
    from pathlib import Path

    from sqlalchemy import select

    from db.engine import session_scope
    from db.models import Image

    root, moved = settings.workspace_path, 0
    with session_scope(settings.database_url) as session:
        for image in session.scalars(select(Image).where(Image.store_path.like("%.view.png"))):
            rel = (image.attributes or {}).get("original_store_path", "")
            if not rel.startswith("store/images/"):
                continue
            new_rel = Path("originals") / Path(rel).relative_to("store/images")
            if (root / rel).exists():
                (root / new_rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(root / rel, root / new_rel)
            if (root / new_rel).exists():  # moved now, or by a run that died before its commit
                image.attributes = {**image.attributes, "original_store_path": str(new_rel)}
                moved += 1
    return moved
