"""`annotator round`: Stage II rounds (next, sync, close, status). Each command is one transaction plus
idempotent Label Studio pushes and reads, so it can be killed and run again."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from annotator.cli.common import JsonFlag, TrainingPreset, handle_errors, in_transaction, push_tasks, sync_tasks
from annotator.cli.common import workspace_session
from annotator.cli.render import render_result, render_rounds, render_sync
from annotator.labelstudio.queue import Queue
from db.models import Round
from workflows.quarantine import outstanding, refused_open
from workflows.stage2 import close_round, next_round

app = typer.Typer(no_args_is_help=True, help="Stage II rounds: next, sync, close, status.")


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
    render_result({**report, "pushed": push_tasks(ctx, Queue.RA_REVIEW)}, as_json, "round started")


@app.command("sync")
@handle_errors
def round_sync(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Read the RAs' decisions (review and adjust queues) into the store; unsure cases go to the MD queue."""
    report = sync_tasks(ctx, (Queue.RA_REVIEW, Queue.RA_ADJUST))
    report["pushed_md_advice"] = push_tasks(ctx, Queue.MD_ADVICE)
    render_sync(report, as_json, "round sync")


@app.command("close")
@handle_errors
def round_close(ctx: typer.Context, preset: TrainingPreset = "quick", as_json: JsonFlag = False) -> None:
    """Close the round: refuses while tasks are undecided; else fine-tunes and swaps the working network."""
    render_result(in_transaction(ctx, close_round, preset), as_json, "round closed")


@app.command("status")
@handle_errors
def round_status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every round with its summary, its quarantined annotations (fix them in Label Studio) and its refused
    ones (made by someone without the queue's role; a member redoes the task)."""
    with workspace_session(ctx, write=False) as (_settings, session):
        rows = [{"stage": r.stage, "number": r.number, "size": r.size, "status": r.status, "strategy": r.strategy,
                 "model_version": r.model_version, "summary": r.summary, "quarantined": outstanding(session, r.id),
                 "refused": refused_open(session, r.id)}
                for r in session.scalars(select(Round).order_by(Round.id))]
    render_rounds(rows, as_json)
