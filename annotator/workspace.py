"""The workspace: one folder with the SQLite file, the image and mask store, models, exports, reports."""

from __future__ import annotations

from annotator.config import Settings
from db.engine import is_initialised, migrate


def init_workspace(settings: Settings) -> bool:
    """Create the folders and migrate the DB to the newest schema; returns True when it was new."""
    root = settings.workspace_path
    new = not (root / "annotator.db").exists() if settings.db_url is None else not is_initialised(settings.database_url)
    for path in (root, settings.image_store, settings.mask_store, settings.models_path, settings.exports_path,
                 settings.reports_path):
        path.mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    return new
