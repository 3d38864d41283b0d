"""`annotator labelstudio start|stop|status|credentials`: the bundled Label Studio of a workspace."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from pydantic import ValidationError

from annotator.cli.common import console, handle_errors, settings_from
from annotator.config import Settings, explain_error, shown_url
from annotator.credentials import SECRET_FIELDS, default_value, secrets_path
from annotator.errors import ConfigError
from annotator.labelstudio.server import server_status, start_server, stop_server

app = typer.Typer(no_args_is_help=True, help="Run the bundled Label Studio server.")


@app.command()
@handle_errors
def start(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(min=1, max=65535,
                                             help="port (default: ANNOTATOR_LABELSTUDIO_PORT or 8080)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for its health")] = 180.0,
    postgres: Annotated[str | None, typer.Option(
        help="run it on this PostgreSQL database, postgresql://user:password@host:port/db (default: "
             "ANNOTATOR_LABELSTUDIO_DB_URL, else SQLite in its folder)")] = None,
) -> None:
    """Start Label Studio with its data in the workspace; prints the URL (`credentials` prints the login)."""
    settings = settings_from(ctx)
    if port is not None:
        settings = settings.model_copy(update={"labelstudio_port": port})
    if postgres is not None:
        try:
            settings = Settings(**{**settings.model_dump(), "labelstudio_db_url": postgres})  # validated
        except ValidationError as exc:
            raise ConfigError(explain_error(exc, None)) from exc
    with console.status("starting Label Studio (the very first start migrates for ~30 s)..."):
        info = start_server(settings, timeout_s=timeout)
    console.print(f"Label Studio running at [bold]{info.url}[/] (pid {info.pid}, up in {info.startup_s:.1f} s)")
    console.print(f"log in as {settings.labelstudio_username}; password and tokens: `annotator labelstudio credentials`",
                  soft_wrap=True, highlight=False)
    console.print(f"data: {info.data_path}  log: {info.log_path}")
    if settings.labelstudio_db_url:
        console.print(f"database: {shown_url('labelstudio_db_url', settings.labelstudio_db_url)}", highlight=False)


@app.command()
@handle_errors
def stop(ctx: typer.Context) -> None:
    """Stop the workspace's Label Studio (by the process id recorded at start)."""
    stopped = stop_server(settings_from(ctx))
    console.print("Label Studio stopped" if stopped else "Label Studio was not running")


@app.command()
@handle_errors
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Is the workspace's Label Studio running and healthy? Exit code 1 when it is not."""
    state = server_status(settings_from(ctx))
    if as_json:
        typer.echo(json.dumps(asdict(state), indent=2))
    else:
        colour = "green" if state.healthy else "red"
        console.print(f"[{colour}]{state.message}[/] {state.url}" + (f" (pid {state.pid})" if state.pid else ""))
    if not state.healthy:
        raise typer.Exit(1)


@app.command()
@handle_errors
def credentials(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Print the login and tokens of this workspace (the only command that shows them)."""
    settings = settings_from(ctx)
    values = {"labelstudio_url": settings.labelstudio_base_url, "labelstudio_username": settings.labelstudio_username,
              **{name: getattr(settings, name) for name in SECRET_FIELDS[:3]}}
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    for name, value in values.items():
        typer.echo(f"{name}: {value}")
    if any(getattr(settings, n) == default_value(n) for n in SECRET_FIELDS[:3]):
        typer.echo(f"(built-in defaults: fine on 127.0.0.1 only; `annotator init` writes random ones to "
                   f"{secrets_path(settings.workspace_path)})", err=True)
