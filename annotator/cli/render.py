"""Rich renderings of service results (the services return plain data)."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from annotator.cli.common import console, err_console


def _table(title: str, mapping: dict, key: str = "name", value: str = "count") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column(value, justify="right")
    for k, v in sorted(mapping.items(), key=lambda kv: (-kv[1], kv[0]) if isinstance(kv[1], int) else (0, kv[0])):
        table.add_row(str(k), str(v))
    return table


def render_result(data: dict | list, as_json: bool, title: str) -> None:
    """A command's result: JSON on stdout for scripts, else a title and one line per key."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    console.print(f"[bold]{title}[/]")
    for key, value in data.items():
        console.print(f"  {key}: {value}", highlight=False)


def render_rounds(rows: list[dict], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        console.print(f"stage {r['stage']} round {r['number']}: {r['size']} images, {r['status']}"
                      + (f", {len(r['quarantined'])} annotation(s) quarantined" if r["quarantined"] else "")
                      + (f", {len(r['refused'])} refused" if r.get("refused") else ""), highlight=False)
        for q in r["quarantined"]:
            console.print(f"  quarantined: image {q['image_id']} (task {q['ls_task_id']}, annotation "
                          f"{q['ls_annotation_id']}): {q['reason']}", highlight=False)
        for q in r.get("refused", []):
            console.print(f"  refused: image {q['image_id']} (task {q['ls_task_id']}, annotation "
                          f"{q['ls_annotation_id']}) by {q['actor']}: {q['reason']}", highlight=False)


def render_sync(report: dict, as_json: bool, title: str) -> None:
    """A sync's report, then the annotations it did not apply."""
    render_result(report, as_json, title)
    render_not_applied(report)


def render_not_applied(report: dict) -> None:
    """Annotations a sync did not apply: quarantined (malformed: fix them in Label Studio, the next sync
    tries them again), invalid (the protocol cannot take them now) or refused (their author may not decide
    in that queue); left open in Label Studio."""
    for message in report.get("quarantined", []):
        err_console.print(f"[yellow]annotation quarantined (fix it in Label Studio; the next sync tries it "
                          f"again):[/] {message}", highlight=False)
    for message in report.get("invalid", []):
        err_console.print(f"[yellow]invalid annotation left open:[/] {message}", highlight=False)
    for message in report.get("refused", []):
        err_console.print(f"[yellow]annotation refused, task left open:[/] {message}", highlight=False)


def render_status(report: dict) -> None:
    console.print(f"[bold]{report['images']}[/] images; masks: "
                  + ", ".join(f"{k} {v}" for k, v in report["masks"].items())
                  + f"; working network: {report['working_model'] or 'none'}")
    console.print(_table("by class", report["by_class"], "class"))
    console.print(_table("by dataset", report["by_dataset"], "dataset"))
    origins = {f"{kind}/{origin}": n for kind, d in report["masks_by_origin"].items() for origin, n in d.items()}
    console.print(_table("mask versions by kind/origin", origins, "kind/origin"))
    console.print(_table("by protocol state", report["by_state"], "state"))


def render_import_summary(summary) -> None:
    table = Table(title=f"import ({summary.layout})", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("items seen", str(summary.seen))
    table.add_row("images added", str(summary.images_added))
    table.add_row("images already in the store", str(summary.images_known))
    for kind in ("lung", "infection"):
        table.add_row(f"{kind} masks added", str(summary.masks_added.get(kind, 0)))
    table.add_row("duplicate content (noted, not re-imported)", str(len(summary.duplicates)))
    table.add_row("warnings", str(len(summary.warnings)))
    table.add_row("failures", str(len(summary.failures)), style="red" if summary.failures else None)
    console.print(table)
    if summary.by_class:
        console.print(_table("added by class", dict(summary.by_class), "class"))
    for name, first in summary.duplicates:  # names are the collection's: never read as markup
        console.print(f"[yellow]duplicate:[/] {escape(name)} has the same content as {escape(first)}", highlight=False)
    for message in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)
    for name, reason in summary.failures:
        console.print(f"[red]failed:[/] {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
