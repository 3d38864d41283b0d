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
    return new
