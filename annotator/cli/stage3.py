"""`annotator stage3`: best of six networks (run, sync, close)."""

from __future__ import annotations

from typing import Annotated

import typer

from annotator.cli.common import (
    JsonFlag,
    handle_errors,
    push_tasks,
    sync_tasks,
    workspace_session,
    workspace_settings,
)
from annotator.cli.render import render_result
from workflows.stage3 import close_stage3, run_stage3

app = typer.Typer(no_args_is_help=True)


@app.command("run")
@handle_errors
def stage3_run(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="training preset of the six networks")] = "quick",
    as_json: JsonFlag = False,
) -> None:
    """Train six networks on the repository, predict every remaining image, push best-of-six tasks."""
    with workspace_session(ctx, labelstudio=True) as (settings, session):
        report = run_stage3(session, settings, preset).__dict__
    render_result({**report, "pushed": push_tasks(settings, "best_of_six")}, as_json, "Stage III")


@app.command("sync")
@handle_errors
def stage3_sync(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Read the best-of-six selections and denials."""
    render_result(sync_tasks(workspace_settings(ctx), ("best_of_six",)), as_json, "Stage III sync")


@app.command("close")
@handle_errors
def stage3_close(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="training preset of the main network")] = "quick",
    as_json: JsonFlag = False,
) -> None:
    """Report the picks, retrain the most-picked network as the main one; denied images return to Stage II."""
    with workspace_session(ctx) as (settings, session):
        summary = close_stage3(session, settings, preset)
    render_result(summary, as_json, "Stage III closed")
