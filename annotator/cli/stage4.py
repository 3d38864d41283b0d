"""`annotator stage4`: MD verification of a stratified sample, which becomes the test set (sample, sync)."""

from __future__ import annotations

from typing import Annotated

import typer

from annotator.cli.common import JsonFlag, handle_errors, push_tasks, sync_tasks, workspace_session
from annotator.cli.render import render_result, render_sync
from annotator.labelstudio.queue import Queue
from workflows.stage4 import finish, sample

app = typer.Typer(no_args_is_help=True, help="Stage IV: MD verification of a stratified sample.")


@app.command("sample")
@handle_errors
def stage4_sample(
    ctx: typer.Context,
    fraction: Annotated[float, typer.Option(help="share of the repository MDs verify")] = 0.2,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Sample the repository (stratified) into the MD verification queue."""
    with workspace_session(ctx, labelstudio=True) as (settings, session):
        report = sample(session, settings, fraction, seed)
    render_result({**report, "pushed": push_tasks(ctx, Queue.MD_VERIFY)}, as_json, "Stage IV sample")


@app.command("sync")
@handle_errors
def stage4_sync(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Read the MDs' verifications; when all are in, store the splits (test = verified)."""
    report = sync_tasks(ctx, (Queue.MD_VERIFY,))
    with workspace_session(ctx) as (_settings, session):
        report.update(finish(session))
    render_sync(report, as_json, "Stage IV sync")
