"""The protocol's commands: `round`, `md`, `stage3`, `stage4`, `export`, `simulate`, `demo`.

Each command is one or a few transactions (each committed at its end); Label Studio side effects are
idempotent, so any command can be killed and run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from annotator.cli.common import console, err_console, handle_errors, require_workspace, settings_from

round_app = typer.Typer(no_args_is_help=True, help="Stage II rounds: next, sync, close, status.")
md_app = typer.Typer(no_args_is_help=True, help="The MD queue: advice on unsure cases.")
stage3_app = typer.Typer(no_args_is_help=True, help="Stage III: best of six networks.")
stage4_app = typer.Typer(no_args_is_help=True, help="Stage IV: MD verification of a stratified sample.")


def register(app: typer.Typer) -> None:
    """Add the protocol commands to the root app."""
    app.add_typer(round_app, name="round")
    app.add_typer(md_app, name="md")
    app.add_typer(stage3_app, name="stage3")
    app.add_typer(stage4_app, name="stage4")
    app.command("export")(export)
    app.command("simulate")(simulate)
    app.command("demo")(demo)


def _echo(data: dict, as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(f"[bold]{title}[/]")
        for key, value in data.items():
            console.print(f"  {key}: {value}", highlight=False)


def _push(settings, url, queue: str) -> dict:
    from workflows.queues import push_queue
    from workflows.session import labelstudio_client

    return push_queue(settings, labelstudio_client(settings), queue)


def _sync(settings, url, queues: tuple[str, ...]) -> dict:
    from workflows.queues import sync_queues
    from workflows.session import labelstudio_client

    return sync_queues(settings, labelstudio_client(settings), queues)


# -- Stage II -------------------------------------------------------------------------------------
@round_app.command("next")
@handle_errors
def round_next(
    ctx: typer.Context,
    size: Annotated[int | None, typer.Option(help="images in the round (default: the round_size setting)")] = None,
    strategy: Annotated[str, typer.Option(help="stratified | random | uncertainty")] = "stratified",
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Choose the next images, pre-label them with the working network and push them to the RA queue."""
    from db.engine import session_scope
    from workflows.stage2 import open_round, start_round
    from workflows.session import labelstudio_client, working_predictor

    settings = settings_from(ctx)
    url = require_workspace(settings)
    labelstudio_client(settings)  # fail before any work when Label Studio is down
    with session_scope(url) as session:
        current = open_round(session)
        if current is None:
            predictor = working_predictor(session, settings)
            report = start_round(session, settings, predictor, size=size or settings.round_size, strategy=strategy,
                                 seed=seed).__dict__
        else:
            report = {"round_id": current.id, "number": current.number, "resumed": True}
    pushed = _push(settings, url, "ra_review")
    _echo({**report, "pushed": pushed}, as_json, "round started")


@round_app.command("sync")
@handle_errors
def round_sync(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Read the RAs' decisions (review and adjust queues) into the store; unsure cases go to the MD queue."""
    settings = settings_from(ctx)
    url = require_workspace(settings)
    report = _sync(settings, url, ("ra_review", "ra_adjust"))
    report["pushed_md_advice"] = _push(settings, url, "md_advice")
    _echo(report, as_json, "round sync")
    for message in report["invalid"]:
        err_console.print(f"[yellow]invalid annotation left open:[/] {message}", highlight=False)


@round_app.command("close")
@handle_errors
def round_close(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="fine-tuning preset")] = "quick",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Close the round: refuses while tasks are undecided; else fine-tunes and swaps the working network."""
    from db.engine import session_scope
    from workflows.stage2 import close_round

    settings = settings_from(ctx)
    url = require_workspace(settings)
    with session_scope(url) as session:
        summary = close_round(session, settings, preset)
    _echo(summary, as_json, "round closed")


@round_app.command("status")
@handle_errors
def round_status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every round with its summary."""
    from sqlalchemy import select

    from db.engine import session_scope
    from db.models import Round

    settings = settings_from(ctx)
    url = require_workspace(settings)
    with session_scope(url) as session:
        rows = [{"stage": r.stage, "number": r.number, "size": r.size, "status": r.status, "strategy": r.strategy,
                 "model_version": r.model_version, "summary": r.summary}
                for r in session.scalars(select(Round).order_by(Round.id))]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        for r in rows:
            console.print(f"stage {r['stage']} round {r['number']}: {r['size']} images, {r['status']}", highlight=False)


@md_app.command("queue")
@handle_errors
def md_queue(
    ctx: typer.Context,
    do_sync: Annotated[bool, typer.Option("--sync", help="read the MDs' advice back first")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Push unsure cases to the MDs; with --sync read their advice and push RA adjust tasks."""
    settings = settings_from(ctx)
    url = require_workspace(settings)
    report: dict = {}
    if do_sync:
        report = _sync(settings, url, ("md_advice",))
    report["pushed_md_advice"] = _push(settings, url, "md_advice")
    report["pushed_ra_adjust"] = _push(settings, url, "ra_adjust")
    _echo(report, as_json, "MD queue")


# -- Stage III ------------------------------------------------------------------------------------
@stage3_app.command("run")
@handle_errors
def stage3_run(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="training preset of the six networks")] = "quick",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train six networks on the repository, predict every remaining image, push best-of-six tasks."""
    from db.engine import session_scope
    from workflows.stage3 import run_stage3

    settings = settings_from(ctx)
    url = require_workspace(settings)
    from workflows.session import labelstudio_client

    labelstudio_client(settings)
    with session_scope(url) as session:
        report = run_stage3(session, settings, preset).__dict__
    report["pushed"] = _push(settings, url, "best_of_six")
    _echo(report, as_json, "Stage III")


@stage3_app.command("sync")
@handle_errors
def stage3_sync(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Read the best-of-six selections and denials."""
    settings = settings_from(ctx)
    url = require_workspace(settings)
    _echo(_sync(settings, url, ("best_of_six",)), as_json, "Stage III sync")


@stage3_app.command("close")
@handle_errors
def stage3_close(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="training preset of the main network")] = "quick",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Report the picks, retrain the most-picked network as the main one; denied images return to Stage II."""
    from db.engine import session_scope
    from workflows.stage3 import close_stage3

    settings = settings_from(ctx)
    url = require_workspace(settings)
    with session_scope(url) as session:
        _echo(close_stage3(session, settings, preset), as_json, "Stage III closed")


# -- Stage IV -------------------------------------------------------------------------------------
@stage4_app.command("sample")
@handle_errors
def stage4_sample(
    ctx: typer.Context,
    fraction: Annotated[float, typer.Option(help="share of the repository MDs verify")] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sample the repository (stratified) into the MD verification queue."""
    from db.engine import session_scope
    from workflows.session import labelstudio_client
    from workflows.stage4 import sample

    settings = settings_from(ctx)
    url = require_workspace(settings)
    labelstudio_client(settings)
    with session_scope(url) as session:
        report = sample(session, settings, fraction, seed)
    report["pushed"] = _push(settings, url, "md_verify")
    _echo(report, as_json, "Stage IV sample")


@stage4_app.command("sync")
@handle_errors
def stage4_sync(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Read the MDs' verifications; when all are in, store the splits (test = verified)."""
    from db.engine import session_scope
    from workflows.stage4 import finish

    settings = settings_from(ctx)
    url = require_workspace(settings)
    report = _sync(settings, url, ("md_verify",))
    with session_scope(url) as session:
        report.update(finish(session))
    _echo(report, as_json, "Stage IV sync")


# -- export, simulate, demo -----------------------------------------------------------------------
@handle_errors
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="output folder")],
    layout: Annotated[str, typer.Option(help="covid-qu-ex")] = "covid-qu-ex",
) -> None:
    """Export images and lung masks by split, with lineage.csv and decisions.csv."""
    from annotator.errors import UnknownNameError
    from db.engine import session_scope
    from workflows.export import export_covid_qu_ex

    if layout != "covid-qu-ex":
        raise UnknownNameError("export layout", layout, ["covid-qu-ex"])
    settings = settings_from(ctx)
    url = require_workspace(settings)
    with session_scope(url) as session:
        summary = export_covid_qu_ex(session, settings, out)
    console.print(f"exported {summary.images} images {summary.by_split} and {summary.lineage_rows} lineage rows "
                  f"to {summary.out_path}", highlight=False)


@handle_errors
def simulate(
    ctx: typer.Context,
    queue: Annotated[list[str] | None, typer.Option(help="queues to work (default: all)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Scripted RAs and MDs work every open task through the Label Studio API, judged against the images'
    reference masks. Then run the matching sync command."""
    from db.engine import session_scope
    from workflows.campaign import act
    from workflows.queues import QUEUE_ORDER
    from workflows.session import labelstudio_client
    from workflows.simulator import ScriptedPeople, SimulationPolicy

    settings = settings_from(ctx)
    url = require_workspace(settings)
    ls = labelstudio_client(settings)
    people = ScriptedPeople(SimulationPolicy(accept_dsc=settings.accept_dsc, seed=seed))
    out = {}
    with session_scope(url) as session:
        for q in queue or QUEUE_ORDER:
            out[q] = act(session, settings, ls, q, people).__dict__
    _echo(out, as_json, "simulated people acted")


@handle_errors
def demo(
    ctx: typer.Context,
    round_size: Annotated[int, typer.Option(help="images per Stage II round")] = 50,
    target: Annotated[int, typer.Option(help="Stage II masks to reach")] = 200,
    preset: Annotated[str, typer.Option(help="training preset for every stage (`demo` fits the demo's time)")] = "demo",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="stop Label Studio and the backend at the end")] = False,
) -> None:
    """The main job on embedded defaults: the whole protocol on the sample set with simulated people."""
    from workflows.demo import run_demo

    settings = settings_from(ctx)
    result = run_demo(settings, round_size=round_size, target=target, preset=preset, serve=not no_serve,
                      say=lambda text: console.print(text, highlight=False))
    console.print((result["report"]["markdown"]).read_text(), highlight=False)
