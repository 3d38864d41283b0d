"""`annotator round`: Stage II rounds (next, sync, close, status). Each command is one transaction plus
idempotent Label Studio pushes and reads, so it can be killed and run again."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy import select

from annotator.cli.common import (
    JsonFlag,
    console,
    err_console,
    handle_errors,
    push_tasks,
    sync_tasks,
    workspace_session,
    workspace_settings,
)
from annotator.cli.render import render_result
from db.models import Round
from workflows.stage2 import close_round, next_round

app = typer.Typer(no_args_is_help=True)


@app.command("next")
@handle_errors
def round_next(
    ctx: typer.Context,
    size: Annotated[int | None, typer.Option(help="images in the round (default: the round_size setting)")] = None,
    strategy: Annotated[str, typer.Option(help="stratified | random | uncertainty")] = "stratified",
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Choose the next images, pre-label them with the working network and push them to the RA queue."""
    with workspace_session(ctx, labelstudio=True) as (settings, session):
        report = next_round(session, settings, size=size or settings.round_size, strategy=strategy, seed=seed)
    render_result({**report, "pushed": push_tasks(settings, "ra_review")}, as_json, "round started")


@app.command("sync")
@handle_errors
def round_sync(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Read the RAs' decisions (review and adjust queues) into the store; unsure cases go to the MD queue."""
    settings = workspace_settings(ctx)
    report = sync_tasks(settings, ("ra_review", "ra_adjust"))
    report["pushed_md_advice"] = push_tasks(settings, "md_advice")
    render_result(report, as_json, "round sync")
    for message in report["invalid"]:
        err_console.print(f"[yellow]invalid annotation left open:[/] {message}", highlight=False)


@app.command("close")
@handle_errors
def round_close(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="fine-tuning preset")] = "quick",
    as_json: JsonFlag = False,
) -> None:
    """Close the round: refuses while tasks are undecided; else fine-tunes and swaps the working network."""
    with workspace_session(ctx) as (settings, session):
        summary = close_round(session, settings, preset)
    render_result(summary, as_json, "round closed")


@app.command("status")
@handle_errors
def round_status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every round with its summary."""
    with workspace_session(ctx) as (_settings, session):
        rows = [{"stage": r.stage, "number": r.number, "size": r.size, "status": r.status, "strategy": r.strategy,
                 "model_version": r.model_version, "summary": r.summary}
                for r in session.scalars(select(Round).order_by(Round.id))]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        for r in rows:
            console.print(f"stage {r['stage']} round {r['number']}: {r['size']} images, {r['status']}", highlight=False)
