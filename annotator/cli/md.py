"""`annotator md`: the MD queue, advice on the cases RAs marked unsure."""

from __future__ import annotations

from typing import Annotated

import typer

from annotator.cli.common import JsonFlag, handle_errors, push_tasks, sync_tasks, workspace_settings
from annotator.cli.render import render_sync
from annotator.labelstudio.queue import Queue

app = typer.Typer(no_args_is_help=True, help="The MD queue: advice on unsure cases.")


@app.command("queue")
@handle_errors
def md_queue(
    ctx: typer.Context,
    do_sync: Annotated[bool, typer.Option("--sync", help="read the MDs' advice back first")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Push unsure cases to the MDs; with --sync read their advice and push RA adjust tasks."""
    workspace_settings(ctx)  # an initialised workspace, or the error saying how to make one
    report: dict = {}
    if do_sync:
        report = sync_tasks(ctx, (Queue.MD_ADVICE,))
    report["pushed_md_advice"] = push_tasks(ctx, Queue.MD_ADVICE)
    report["pushed_ra_adjust"] = push_tasks(ctx, Queue.RA_ADJUST)
    render_sync(report, as_json, "MD queue")
