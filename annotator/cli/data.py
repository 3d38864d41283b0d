"""`annotator data import|validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from annotator.cli.common import console, err_console, handle_errors, require_workspace, settings_from
from annotator.cli.render import render_import_summary
from annotator.credentials import with_workspace_secrets
from annotator.ingest.importer import import_items, list_items
from annotator.ingest.layouts import LAYOUTS, printable
from annotator.ingest.validate import validate_store
from annotator.progress import progress_bar
from annotator.workspace import init_workspace
from db.engine import session_scope

app = typer.Typer(no_args_is_help=True, help="Import and validate image collections.")


@app.command("import")
@handle_errors
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="the collection's root folder")],
    layout: Annotated[str, typer.Option("--layout", "-l", help=f"one of: {', '.join(LAYOUTS)}")] = "folder",
    cls: Annotated[str | None, typer.Option("--class", help="class of every image (folder layout)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    deidentify: Annotated[bool, typer.Option(
        "--deidentify", help="store DICOM copies with the identifying header fields removed (PS3.15 basic "
                             "profile subset) and patient ids as keyed pseudonyms")] = False,
    mask_threshold: Annotated[float | None, typer.Option(
        "--mask-threshold", min=0,
        help="read masks that are not binary: a value >= N is inside (else they are refused)")] = None,
) -> None:
    """Import a collection: images are copied into the store by content hash, masks recorded as `seed`.

    Running it again adds nothing. Every bad item is listed at the end and the rest imports. Exit code:
    0 every item is in the store, 3 partial (some items refused, the rest imported), 1 nothing imported
    (the command failed, nothing was found, or every item was refused).
    """
    settings = settings_from(ctx)
    items = list_items(path, layout, cls)  # a bad layout or folder fails before anything is written
    init_workspace(settings)
    settings = with_workspace_secrets(settings)  # the pseudonym key init may have just written
    with session_scope(settings.database_url) as session, \
            progress_bar(f"importing {path.name}", total=len(items), unit="items") as bar:
        summary = import_items(session, settings, items, layout, on_item=lambda _n: bar.advance(),
                               checkpoint=session.commit, deidentify=deidentify, mask_threshold=mask_threshold)
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        render_import_summary(summary)
    if summary.outcome == "partial":
        err_console.print(f"[yellow]partial import:[/] {len(summary.failures)} item(s) failed; the rest was imported "
                          f"({summary.good} in the store). Fix the items listed and run the same command again: it "
                          "adds only what is new (exit code 3)", soft_wrap=True)
    elif summary.outcome == "failed":
        err_console.print("[red]nothing imported:[/] " + (
            f"all {len(summary.failures)} item(s) failed (listed above)" if summary.failures else
            f"no image found under {escape(printable(str(path)))} with --layout {layout}") + " (exit code 1)",
                          soft_wrap=True)
    raise typer.Exit(summary.exit_code)


@app.command()
@handle_errors
def validate(ctx: typer.Context) -> None:
    """Re-check the store: every image and mask file exists, decodes, has its hash and its image's size."""
    settings = settings_from(ctx)
    url = require_workspace(settings)
    with session_scope(url) as session, progress_bar("validating the store", unit="files") as bar:
        report = validate_store(session, settings, on_item=bar.advance)
    console.print(f"checked {report.images} images and {report.masks} masks: "
                  f"{'all good' if not report.problems else f'{len(report.problems)} problem(s)'}")
    for where, reason in report.problems:
        console.print(f"[red]problem:[/] {escape(where)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if report.problems:
        raise typer.Exit(1)
