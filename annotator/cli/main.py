"""`annotator`: the entry point. Global options build the settings; groups live one module each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from annotator.cli import campaign, common, config, data, demo, export, labelstudio, md, model, people, pipeline
from annotator.cli import serve, simulate, stage1, stage3, stage4
from annotator.cli import round as round_
from annotator.cli.common import JsonFlag, console, handle_errors, settings_from, workspace_session
from annotator.cli.config import print_versions
from annotator.cli.launch import launch_or_join
from annotator.cli.render import render_status
from annotator.credentials import secrets_path
from annotator.device import distributed_env
from annotator.status import collect_status
from annotator.workspace import init_workspace

# `annotator --help` lists the commands in the order a campaign uses them; any other command follows
COMMAND_ORDER = ("init", "data", "labelstudio", "people", "stage1", "serve", "round", "md", "stage3", "stage4",
                 "campaign", "export", "model", "train-pipeline", "predict", "evaluate-pipeline", "status", "simulate",
                 "demo")


class ProtocolOrderGroup(TyperGroup):
    """The root group, listing its commands in ``COMMAND_ORDER`` (Typer lists plain commands before groups)."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(
    name="annotator",
    cls=ProtocolOrderGroup,
    help="Human-in-the-loop lung masks for chest X-ray collections, and a COVID-19 recognition pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain help: Typer's rich panels print a value placeholder (<bool>) beside every flag, as if it took one
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # up to 120 columns when the terminal has them
)


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", envvar="ANNOTATOR_WORKSPACE", help="workspace folder")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", envvar="ANNOTATOR_CONFIG", help="settings TOML")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log debug messages")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=print_versions,
                                          help="print the versions (package, torch, smp, Label Studio) and exit")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="run the command in N processes under torchrun, one "
                                       "per GPU (or N CPU processes): trainings use DistributedDataParallel")] = 1,
) -> None:
    common.configure_logging(verbose)
    source = ctx.get_parameter_source("workspace")
    ctx.obj = {"workspace": workspace, "config": config, "workspace_source": source.name if source else None}
    if nproc > 1 or distributed_env() is not None:
        launch_or_join(nproc, settings_from(ctx).device)


@app.command()
@handle_errors
def init(ctx: typer.Context) -> None:
    """Create the workspace (DB, image store, models, exports, random secrets); safe to run again."""
    settings = settings_from(ctx)
    created = init_workspace(settings)
    # paths are printed whole (no wrapping) so they can be copied
    console.print(f"workspace {'created' if created else 'ready'}: {settings.workspace_path}", soft_wrap=True,
                  highlight=False)
    console.print(f"database: {settings.database_url}", soft_wrap=True, highlight=False)
    console.print(f"secrets: {secrets_path(settings.workspace_path)} (mode 0600; shown by "
                  "`annotator labelstudio credentials`)", soft_wrap=True, highlight=False)


@app.command()
@handle_errors
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Counts by class, dataset, mask kind/origin and protocol state."""
    with workspace_session(ctx, write=False) as (_settings, session):
        report = collect_status(session)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        render_status(report)


def _register_commands() -> None:
    """One module per group or command (``annotator/cli/<name>.py``)."""
    for group in (data, labelstudio, people, stage1, serve, round_, md, stage3, stage4, campaign, model, config):
        # each module's Typer carries its own help text; its name is the module's
        app.add_typer(group.app, name=group.__name__.rsplit(".", 1)[-1])
    app.command("export")(export.export)
    pipeline.register(app)
    app.command("simulate")(simulate.simulate)
    app.command("demo")(demo.demo)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    app()
