"""`annotator config show` and `annotator --version`: what this install is and what it is set to."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Annotated

import typer
from rich.table import Table

from annotator.cli.common import console, err_console, handle_errors

app = typer.Typer(no_args_is_help=True, help="Show the settings, their values and where they came from.")

# distribution -> how to get it when missing; read from the installed metadata, nothing is imported
VERSIONED = {
    "cxr-annotator": "pip install .",
    "torch": "pip install '.[ml]'",
    "segmentation-models-pytorch": "pip install '.[ml]'",
    "label-studio": "pip install '.[server]'",
    "label-studio-sdk": "pip install .",
}


def versions() -> dict[str, str | None]:
    """Installed versions of the package and what it runs on (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def print_versions(value: bool) -> None:
    """The eager `--version` option: print and exit before any command runs."""
    if not value:
        return
    for dist, version in versions().items():
        typer.echo(f"{dist} {version}" if version else f"{dist} not installed ({VERSIONED[dist]})")
    raise typer.Exit()


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print every setting as JSON")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the README's settings table (defaults)")] = False,
) -> None:
    """Every setting, its value and its source (default, secrets file, file, environment, option); secrets masked."""
    from annotator.config_reference import as_json as rows_json
    from annotator.config_reference import UNSET, describe_settings, markdown_table

    obj = ctx.find_root().obj or {}
    file_path, rows = describe_settings(obj.get("workspace"), obj.get("config"),
                                        workspace_from_option=obj.get("workspace_source") == "COMMANDLINE")
    data = rows_json(file_path, rows)
    if markdown:
        typer.echo(markdown_table(rows), nl=False)
        return
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"settings file: {file_path or 'none'}", title_justify="left", box=None,
                  caption="each setting is also the variable ANNOTATOR_<SETTING> and a key of the file",
                  caption_justify="left")
    for col in ("setting", "value", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.name, UNSET.get(r.name, "(unset)") if r.value is None else str(r.value), r.source)
    console.print(table, highlight=False)
    for name in data["unknown_variables"]:
        err_console.print(f"[yellow]warning:[/] {name} names no setting (ignored)", highlight=False)
