"""What every command shares: the settings from the global options, the console, error rendering."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session

from annotator.config import Settings, load_settings
from annotator.errors import AnnotatorError, WorkspaceError
from annotator.segmentation.presets import PRESETS
from db.engine import migrate, session_scope
from workflows.queues import push_queue, sync_queues
from workflows.session import labelstudio_client

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

# options several commands take
JsonFlag = Annotated[bool, typer.Option("--json", help="print the result as JSON (for scripts)")]
TrainingPreset = Annotated[str, typer.Option(help=f"training preset: {' | '.join(PRESETS)}")]


def settings_from(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj or {}
    if "settings" not in obj:
        obj["settings"] = load_settings(workspace=obj.get("workspace"), config_file=obj.get("config"))
        ctx.find_root().obj = obj
    return obj["settings"]


def require_workspace(settings: Settings) -> str:
    """The DB URL of an initialised workspace, migrating it to the newest schema; else a clear error."""
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


def workspace_settings(ctx: typer.Context) -> Settings:
    """The settings of an initialised workspace, its DB migrated to the newest schema (once per command)."""
    settings = settings_from(ctx)
    root = ctx.find_root()
    if not root.obj.get("workspace_checked"):
        require_workspace(settings)
        root.obj["workspace_checked"] = True
    return settings


@contextmanager
def workspace_session(ctx: typer.Context, *, labelstudio: bool = False,
                      write: bool = True) -> Iterator[tuple[Settings, Session]]:
    """The command's transaction on an initialised workspace: committed when the block ends, rolled back
    when it raises. With ``labelstudio`` it first fails, changing nothing, when Label Studio is down;
    ``write=False`` for a command that only reads (on SQLite it then does not wait for the write lock)."""
    settings = workspace_settings(ctx)
    if labelstudio:
        labelstudio_client(settings)
    with session_scope(settings.database_url, write=write) as session:
        yield settings, session


def in_transaction(ctx: typer.Context, work: Callable[..., T], *args, **kwargs) -> T:
    """``work(session, settings, *args, **kwargs)``: one stage function in the command's transaction."""
    with workspace_session(ctx) as (settings, session):
        return work(session, settings, *args, **kwargs)


def push_tasks(ctx: typer.Context, queue: str) -> dict:
    """Push ``queue``'s open tasks to Label Studio (a transaction of its own; idempotent)."""
    settings = workspace_settings(ctx)
    return push_queue(settings, labelstudio_client(settings), queue)


def sync_tasks(ctx: typer.Context, queues: tuple[str, ...]) -> dict:
    """Read ``queues``' annotations back from Label Studio (a transaction of its own; idempotent)."""
    settings = workspace_settings(ctx)
    return sync_queues(settings, labelstudio_client(settings), queues)


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
