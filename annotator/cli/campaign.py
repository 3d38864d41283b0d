"""`annotator campaign status`: the team's work, agreement and refused decisions (JSON, text and a PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from annotator.cli.common import JsonFlag, console, handle_errors, workspace_session
from workflows.team_report import campaign_status, write_team_png

app = typer.Typer(no_args_is_help=True, help="The team's work: per person, agreement of double reads, refused decisions.")


@app.command("status")
@handle_errors
def status(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    png: Annotated[Path | None, typer.Option(help="where to draw it (default: <workspace>/reports/team.png)")] = None,
) -> None:
    """Per queue what is open; per person decisions by kind, median lead time, share accepted unedited; agreement."""
    with workspace_session(ctx, write=False) as (settings, session):
        report = campaign_status(session)
    report["png"] = str(write_team_png(report, png or settings.reports_path / "team.png"))
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    console.print("open tasks: " + (", ".join(f"{q} {n}" for q, n in report["open_tasks"].items()) or "none"),
                  highlight=False)
    for p in report["people"]:
        kinds = ", ".join(f"{k} {n}" for k, n in p["decisions"].items()) or "no decisions"
        share = "-" if p["accepted_unedited_share"] is None else f"{p['accepted_unedited_share']:.0%}"
        lead = "-" if p["median_lead_s"] is None else f"{p['median_lead_s']:.1f} s"
        console.print(f"{p['role']:<3} {p['email']:<32} {kinds}; median {lead}; accepted unedited {share}; "
                      f"masks {p['masks_made']}; refused {p['refused']}" + ("" if p["active"] else " (deactivated)"),
                      highlight=False, soft_wrap=True)
    a = report["agreement"]
    console.print(f"agreement of double reads: {a['pairs']} pair(s), kappa {a['kappa']}, DSC {a['dsc']}",
                  highlight=False)
    for r in report["refused"]:
        console.print(f"refused: image {r['image_id']} ({r['queue']}, task {r['ls_task_id']}) by {r['actor']}: "
                      f"{r['reason']}", highlight=False, soft_wrap=True)
    console.print(f"chart: {report['png']}", highlight=False, soft_wrap=True)
