"""`annotator demo` (and, as they land, the protocol's groups: round, md, stage3, stage4, export, simulate)."""

from __future__ import annotations

from typing import Annotated

import typer

from annotator.cli.common import console, err_console, handle_errors, settings_from


def register(app: typer.Typer) -> None:
    """Add the protocol commands to the root app."""
    app.command("demo")(demo)


@handle_errors
def demo(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="Stage I training preset (`demo` fits the demo's time)")] = "demo",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="stop Label Studio at the end")] = False,
) -> None:
    """The main job on embedded defaults: import the sample set, then run every stage that exists."""
    from annotator.cli.render import render_import_summary, render_status
    from annotator.errors import AnnotatorError
    from annotator.ingest.importer import import_items, list_items
    from annotator.status import collect_status
    from annotator.workspace import init_workspace
    from db.engine import session_scope

    settings = settings_from(ctx)
    data = settings.sample_data_path
    if data is None:
        raise AnnotatorError("no sample set found; set ANNOTATOR_SAMPLE_DATA to the folder holding manifest.csv")
    init_workspace(settings)
    console.rule("import the sample set")
    items = list_items(data, "manifest")
    with session_scope(settings.database_url) as session:
        summary = import_items(session, settings, items, "manifest", checkpoint=session.commit)
    render_import_summary(summary)
    with session_scope(settings.database_url) as session:
        render_status(collect_status(session))
    if not summary.ok:
        err_console.print(f"[yellow]{len(summary.failures)} sample item(s) failed to import[/]")
