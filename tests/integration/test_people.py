"""The team against a real Label Studio: `annotator people` makes each person an account of their own, a
person logs in with a personal access token (Bearer), a workspace points at an existing server by URL and
token, and a create whose answer was lost is not made twice."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotator.cli.main import app
from annotator.config import load_settings
from annotator.errors import LabelStudioError
from annotator.labelstudio.auth import token_kind
from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.queue import get_queue
from annotator.labelstudio.users import current_user, list_users, login_token
from db.engine import session_scope
from db.models import Person

pytestmark = pytest.mark.integration


def _email(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:8]}@example.org"


@pytest.fixture
def team_cli(tmp_path, ls_settings, ls_server):
    """``cli(*args) -> Result`` on a fresh workspace that reaches the session's Label Studio only through
    ANNOTATOR_LABELSTUDIO_URL and ANNOTATOR_LABELSTUDIO_TOKEN, as an existing server would be."""
    ws = tmp_path / "team"
    env = {"ANNOTATOR_LABELSTUDIO_URL": ls_server.url, "ANNOTATOR_LABELSTUDIO_TOKEN": ls_settings.labelstudio_token,
           "COLUMNS": "200"}
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, ["--workspace", str(ws), *args], env=env)

    assert cli("init").exit_code == 0
    cli.settings = load_settings(workspace=ws)
    return cli


def test_a_person_gets_an_account_of_their_own_once_and_logs_in_with_a_personal_access_token(team_cli, ls_server,
                                                                                             ls_settings):
    email = _email("rita")
    added = team_cli("people", "add", email.upper(), "--role", "ra", "--name", "Rita Alves", "--json")
    assert added.exit_code == 0, added.output
    first = json.loads(added.output)
    assert (first["email"], first["role"], first["active"], first["created"]) == (email, "RA", True, True)
    password = first["first_password"]
    assert len(password) >= 16 and first["login_url"] == f"{ls_server.url}/user/login/"
    admin = LabelStudio(ls_settings)
    (user,) = [u for u in list_users(admin) if u["email"] == email]
    assert user["id"] == first["ls_user_id"] and (user["first_name"], user["last_name"]) == ("Rita", "Alves")

    # the password is shown once and kept nowhere of ours
    with session_scope(team_cli.settings.database_url, write=False) as session:
        (row,) = session.scalars(select(Person)).all()
        assert (row.email, row.role, row.ls_user_id, row.active) == (email, "RA", user["id"], True)
    assert password.encode() not in (team_cli.settings.workspace_path / "annotator.db").read_bytes()

    # added twice: a clear message, nothing duplicated; another role: refused
    again = team_cli("people", "add", email, "--role", "ra")
    assert again.exit_code == 0 and "is already in the team as RA" in again.output and "nothing changed" in again.output
    other = team_cli("people", "add", email, "--role", "md")
    assert other.exit_code == 1 and "a person has one role" in other.output
    assert len([u for u in list_users(admin) if u["email"] == email]) == 1
    listed = json.loads(team_cli("people", "list", "--json").output)
    assert [(p["email"], p["role"], p["ls_user_id"]) for p in listed] == [(email, "RA", user["id"])]

    # their own personal access token: a JWT refresh token, sent as Bearer after /api/token/refresh/
    pat = login_token(ls_server.url, email, password)
    assert token_kind(pat) == "pat" and token_kind(ls_settings.labelstudio_token) == "legacy"
    as_rita = LabelStudio(ls_settings.model_copy(update={"labelstudio_token": pat}))
    assert current_user(as_rita)["email"] == email
    assert as_rita.auth.header().startswith("Bearer ") and as_rita.auth.header() != f"Bearer {pat}"
    project_id = as_rita.ensure_project("md_verify", round_key=f"pat-{uuid.uuid4().hex[:6]}")
    assert project_id in {p["id"] for p in admin.list_projects()}  # made as her, in the same organisation

    # deactivated: Label Studio removes the membership; her token opens nothing of ours any more
    off = team_cli("people", "deactivate", email)
    assert off.exit_code == 0 and "deactivated: removed from Label Studio" in off.output
    assert project_id not in {p["id"] for p in _projects_or_none(as_rita)}
    assert "deactivated already" in team_cli("people", "deactivate", email).output
    back = team_cli("people", "add", email, "--role", "ra")
    assert back.exit_code == 1 and "was deactivated on" in back.output
    assert json.loads(team_cli("people", "list", "--json").output)[0]["active"] is False


def _projects_or_none(ls) -> list[dict]:
    try:
        return ls.list_projects()
    except LabelStudioError:
        return []


def test_bad_people_input_is_refused_with_the_fix(team_cli):
    for args, expected in ((("not-an-email", "--role", "ra"), "is not an e-mail address"),
                           ((_email("x"), "--role", "boss"), "unknown role 'boss'; a person is one of: ra, md")):
        result = team_cli("people", "add", *args)
        assert result.exit_code == 1 and expected in result.output, result.output
    missing = team_cli("people", "deactivate", "nobody@example.org")
    assert missing.exit_code == 1 and "no person 'nobody@example.org' in the team" in missing.output
    assert json.loads(team_cli("people", "list", "--json").output) == []


def test_an_existing_account_is_linked_not_made_again(team_cli, ls_server, ls_settings):
    """An account made by hand (or by a run that died before committing) is taken over, with no new password."""
    email = _email("md")
    from annotator.labelstudio.users import create_account

    ls_user_id, _ = create_account(LabelStudio(ls_settings), email)
    added = json.loads(team_cli("people", "add", email, "--role", "md", "--json").output)
    assert (added["ls_user_id"], added["role"], added["first_password"]) == (ls_user_id, "MD", None)
    assert "linked to their existing Label Studio account" in added["message"]


def test_a_project_whose_create_answer_was_lost_is_made_once(ls_settings, ls_server, dropping_proxy):
    url, proxy = dropping_proxy("/api/projects")
    ls = LabelStudio(ls_settings.model_copy(update={"labelstudio_url": url}), backoff_s=0.05)
    key = f"lost-{uuid.uuid4().hex[:6]}"
    project_id = ls.ensure_project("ra_review", round_key=key)
    assert proxy.dropped == 1
    title = LabelStudio.project_title(get_queue("ra_review"), key)
    same = [p["id"] for p in LabelStudio(ls_settings).list_projects() if p["title"] == title]
    assert same == [project_id]
