"""`annotator export`: the repository's images and lung masks by split, with their lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotator.cli.common import console, handle_errors, in_transaction
from annotator.errors import UnknownNameError
from workflows.export import export_covid_qu_ex

LAYOUTS = ("covid-qu-ex",)


@handle_errors
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="output folder")],
    layout: Annotated[str, typer.Option(help=f"folder layout of the export: {' | '.join(LAYOUTS)}")] = "covid-qu-ex",
) -> None:
    """Export images and lung masks by split, with lineage.csv and decisions.csv."""
    if layout not in LAYOUTS:
        raise UnknownNameError("export layout", layout, list(LAYOUTS))
    summary = in_transaction(ctx, export_covid_qu_ex, out)
    console.print(f"exported {summary.images} images {summary.by_split} and {summary.lineage_rows} lineage rows "
                  f"to {summary.out_path}", highlight=False)
