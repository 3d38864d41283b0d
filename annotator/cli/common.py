"""What every command shares: the settings from the global options, the console, error rendering."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from annotator.config import Settings, load_settings
from annotator.errors import AnnotatorError, WorkspaceError

console = Console()
err_console = Console(stderr=True)


def settings_from(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj or {}
    if "settings" not in obj:
        obj["settings"] = load_settings(workspace=obj.get("workspace"), config_file=obj.get("config"))
        ctx.find_root().obj = obj
    return obj["settings"]


def require_workspace(settings: Settings) -> str:
    """The DB URL of an initialised workspace, migrating it to the newest schema; else a clear error."""
    from db.engine import migrate

    if settings.db_url is None and not (settings.workspace_path / "annotator.db").exists():
        raise WorkspaceError(
            f"no workspace at {settings.workspace_path}; run `annotator init` (or pass --workspace DIR)"
        )
    from sqlalchemy.exc import DatabaseError

    try:
        migrate(settings.database_url)
    except DatabaseError as exc:  # not a database (a corrupt or foreign file), or one that cannot be opened
        raise WorkspaceError(f"cannot open the workspace database {settings.database_url}: "
                             f"{' '.join(str(exc.orig or exc).split())}") from exc
    return settings.database_url


def handle_errors(func: Callable) -> Callable:
    """Render AnnotatorError (and an OSError: a folder that cannot be written, a full disk) as one red line
    and exit 1; anything else is a bug and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AnnotatorError as exc:
            # escaped: a message may hold brackets ("pip install '.[server]'") that rich would read as markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from exc
        except OSError as exc:  # a folder that cannot be written, a full disk: one line too
            where = f"{exc.filename}: " if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(1) from exc

    return wrapper


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def workspace_option() -> Path | None:  # pragma: no cover - documentation helper
    return None
