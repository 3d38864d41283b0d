"""`annotator`: the entry point. Global options build the settings; groups live one module each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from annotator.cli import common
from annotator.cli.common import console, handle_errors, settings_from
from annotator.cli.config import print_versions

app = typer.Typer(
    name="annotator",
    help="Human-in-the-loop lung masks for chest X-ray collections, and a COVID-19 recognition pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
) -> None:
    common.configure_logging(verbose)
    source = ctx.get_parameter_source("workspace")
    ctx.obj = {"workspace": workspace, "config": config, "workspace_source": source.name if source else None}


@app.command()
@handle_errors
def init(ctx: typer.Context) -> None:
    """Create the workspace (DB, image store, models, exports, random secrets); safe to run again."""
    from annotator.credentials import secrets_path
    from annotator.workspace import init_workspace

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
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Counts by class, dataset, mask kind/origin and protocol state."""
    from annotator.cli.render import render_status
    from annotator.status import collect_status
    from db.engine import session_scope

    settings = settings_from(ctx)
    url = common.require_workspace(settings)
    with session_scope(url) as session:
        report = collect_status(session)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        render_status(report)


def _register_groups() -> None:
    from annotator.cli import config, data, labelstudio, model, pipeline, protocol, serve, stage1

    app.add_typer(data.app, name="data", help="Import and validate image collections.")
    app.add_typer(model.app, name="model", help="Segmentation networks: list, train, evaluate.")
    app.add_typer(stage1.app, name="stage1", help="Stage I: train three U-Net variants on the seed masks.")
    app.add_typer(labelstudio.app, name="labelstudio", help="Run the bundled Label Studio server.")
    app.add_typer(serve.app, name="serve", help="Run the ML backend for Label Studio.")
    app.add_typer(config.app, name="config", help="Show the settings, their values and where they came from.")
    pipeline.register(app)
    protocol.register(app)


_register_groups()

if __name__ == "__main__":  # pragma: no cover
    app()
