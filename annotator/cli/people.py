"""`annotator people add|list|deactivate`: the team, each person with a Label Studio account of their own."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from annotator.cli.common import JsonFlag, console, handle_errors, workspace_session
from workflows.people import add_person, as_dict, deactivate_person, list_people
from workflows.session import labelstudio_client

app = typer.Typer(no_args_is_help=True, help="The team: RAs and MDs, each with their own Label Studio account.")
ROLES = ("ra", "md")  # what --role takes (the store refuses anything else too)


@app.command("add")
@handle_errors
def people_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="their e-mail: their Label Studio login")],
    role: Annotated[str, typer.Option(help=f"{' or '.join(ROLES)}: an RA judges masks, an MD advises and verifies")],
    name: Annotated[str | None, typer.Option(help="their name, as reports show it")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a person and make their Label Studio account; its first password is printed once, never stored."""
    with workspace_session(ctx) as (settings, session):
        added = add_person(session, labelstudio_client(settings), email, role, name)
        person = as_dict(added.person)
    login = f"{settings.labelstudio_base_url}/user/login/"
    if as_json:
        typer.echo(json.dumps({**person, "created": added.created, "message": added.message, "login_url": login,
                               "first_password": added.password}, indent=2))
        return
    console.print(added.message, highlight=False, soft_wrap=True)
    if added.password:
        console.print(f"log in at {login} as {person['email']} with the first password (shown this once, "
                      "stored nowhere; hand it over privately):", highlight=False, soft_wrap=True)
        typer.echo(added.password)


@app.command("list")
@handle_errors
def people_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The team: e-mail, role, Label Studio user id, active or not."""
    with workspace_session(ctx, write=False) as (_settings, session):
        rows = list_people(session)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no people yet: `annotator people add EMAIL --role ra|md`")
    for r in rows:
        state = "active" if r["active"] else f"deactivated {r['deactivated'][:10]}"
        console.print(f"{r['role']:<3} {r['email']:<32} {r['name'] or '':<24} LS user {r['ls_user_id']}  {state}",
                      highlight=False, soft_wrap=True)


@app.command("deactivate")
@handle_errors
def people_deactivate(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="the person's e-mail")],
) -> None:
    """Take a person off the team: Label Studio membership ends, later annotations of theirs are refused."""
    with workspace_session(ctx) as (settings, session):
        message = deactivate_person(session, labelstudio_client(settings), email)
    console.print(message, highlight=False, soft_wrap=True)
