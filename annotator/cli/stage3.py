"""`annotator stage3`: best of six networks (run, sync, close)."""

from __future__ import annotations

import typer

from annotator.cli.common import JsonFlag, TrainingPreset, handle_errors, in_transaction, push_tasks, sync_tasks
from annotator.cli.common import workspace_session
from annotator.cli.render import render_result, render_sync
from annotator.labelstudio.queue import Queue
from workflows.stage3 import close_stage3, run_stage3

app = typer.Typer(no_args_is_help=True, help="Stage III: best of six networks.")


@app.command("run")
@handle_errors
def stage3_run(ctx: typer.Context, preset: TrainingPreset = "quick", as_json: JsonFlag = False) -> None:
    """Train six networks on the repository, predict every remaining image, push best-of-six tasks."""
    with workspace_session(ctx, labelstudio=True) as (settings, session):
        report = run_stage3(session, settings, preset).__dict__
    render_result({**report, "pushed": push_tasks(ctx, Queue.BEST_OF_SIX)}, as_json, "Stage III")


@app.command("sync")
@handle_errors
def stage3_sync(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Read the best-of-six selections and denials."""
    render_sync(sync_tasks(ctx, (Queue.BEST_OF_SIX,)), as_json, "Stage III sync")


@app.command("close")
@handle_errors
def stage3_close(ctx: typer.Context, preset: TrainingPreset = "quick", as_json: JsonFlag = False) -> None:
    """Report the picks, retrain the most-picked network as the main one; denied images return to Stage II."""
    render_result(in_transaction(ctx, close_stage3, preset), as_json, "Stage III closed")
