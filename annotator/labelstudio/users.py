"""Label Studio accounts of the team: create one per person, find, deactivate, log in for a token.

What Label Studio 1.23 (open source) offers, read in its code (``users/api.py``, ``users/views.py``,
``organizations/api.py``, ``jwt_auth/views.py``):

- ``POST /api/users/`` makes a user *without a password* (its serializer has no password field) and the
  open-source edition has no password reset by e-mail: such a user could never log in.
- ``GET /api/invite`` gives the organisation's invite link ``/user/signup/?token=...``; signing up there
  with an e-mail and a password makes a member of the organisation (the bundled server allows sign-up only
  with that link: ``LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK``). ``create_account`` signs the person up
  through it with a random first password and returns it once: the caller shows it and forgets it.
- A member is removed with ``DELETE /api/organizations/<org>/memberships/<user>/`` (a soft delete: the
  user can no longer open the organisation's projects, their task locks are freed, their past annotations
  stay). There is no API to undo it.
- A person's own API token: log in with their password (``/user/login/``), then ``POST /api/token/`` makes
  their personal access token (``login_token``).
"""

from __future__ import annotations

import html
import re
import secrets

import requests

from annotator.errors import LabelStudioError

FIRST_PASSWORD_BYTES = 12  # token_urlsafe(12): 16 characters


def current_user(ls) -> dict:
    return ls.request("GET", "/api/current-user/whoami")


def list_users(ls) -> list[dict]:
    data = ls.request("GET", "/api/users")
    return data["results"] if isinstance(data, dict) else data


def find_user(ls, email: str) -> dict | None:
    """The member of our organisation with this e-mail (any case), or None."""
    email = email.strip().lower()
    return next((u for u in list_users(ls) if (u.get("email") or "").lower() == email), None)


def _form(session: requests.Session, url: str, fields: dict, timeout_s: float) -> requests.Response:
    """Django's form dance: GET the page for the CSRF cookie, POST the fields with it (no redirects)."""
    session.get(url, timeout=timeout_s)
    csrf = session.cookies.get("csrftoken", "")
    return session.post(url, data={**fields, "csrfmiddlewaretoken": csrf}, allow_redirects=False,
                        headers={"Referer": url, "X-CSRFToken": csrf}, timeout=timeout_s)


def _form_errors(page: str) -> str:
    """The error lines of a Label Studio form page (its ``error`` elements), as one line."""
    found = re.findall(r'class="[^"]*error[^"]*"[^>]*>\s*([^<]+?)\s*<', page)
    lines = [html.unescape(x) for x in dict.fromkeys(found) if x.strip()]
    return "; ".join(lines) or "the form was refused"


def create_account(ls, email: str, *, name: str | None = None, password: str | None = None) -> tuple[int, str]:
    """Sign ``email`` up through the organisation's invite link with a random first password (or the one
    given: the simulator's accounts); returns (ls_user_id, password). The password is not kept anywhere:
    show it once."""
    invite = ls.request("GET", "/api/invite")
    url = f"{ls.url}/user/signup/?token={invite['token']}"
    password = password or secrets.token_urlsafe(FIRST_PASSWORD_BYTES)
    with requests.Session() as browser:
        try:
            resp = _form(browser, url, {"email": email, "password": password, "allow_newsletters": ""}, ls.timeout_s)
        except requests.RequestException as exc:
            raise LabelStudioError(f"Label Studio at {ls.url} did not answer the sign-up of {email}: "
                                   f"{type(exc).__name__}") from exc
    if resp.status_code != 302:
        found = find_user(ls, email)
        if found is not None:  # it landed although its answer was lost (or someone else made it meanwhile)
            raise LabelStudioError(f"Label Studio already has an account for {email} (user {found['id']}) that "
                                   "we did not make now; its password is unknown to us")
        reason = _form_errors(resp.text) if resp.status_code == 200 else f"HTTP {resp.status_code}"
        raise LabelStudioError(f"Label Studio refused to make an account for {email}: {reason}")
    user = find_user(ls, email)
    if user is None:
        raise LabelStudioError(f"Label Studio signed {email} up but does not list the user; is our token's user "
                               "in the same organisation?")
    if name:
        first, _, last = name.strip().partition(" ")
        ls.request("PATCH", f"/api/users/{int(user['id'])}/", json={"first_name": first[:30], "last_name": last[:150]})
    return int(user["id"]), password


def deactivate_account(ls, ls_user_id: int) -> bool:
    """Remove the user from our organisation (they can no longer open its projects); False when they had
    been removed already or are unknown."""
    org = current_user(ls)["active_organization"]
    try:
        ls.request("DELETE", f"/api/organizations/{int(org)}/memberships/{int(ls_user_id)}/")
    except LabelStudioError as exc:
        if "answered 404" in str(exc):
            return False
        raise
    return True


def _login(browser: requests.Session, base_url: str, email: str, password: str, timeout_s: float) -> str:
    """Log ``browser`` in as the person; returns the CSRF token its API calls send."""
    resp = _form(browser, f"{base_url}/user/login/", {"email": email, "password": password}, timeout_s)
    if resp.status_code != 302:
        raise LabelStudioError(f"Label Studio refused the login of {email}: {_form_errors(resp.text)}")
    return browser.cookies.get("csrftoken", "")


def login_token(base_url: str, email: str, password: str, *, timeout_s: float = 30.0) -> str:
    """Log in as a person and make their personal access token (a JWT refresh token); their token when
    they already have one cannot be read back, so that is an error saying so."""
    base_url = base_url.rstrip("/")
    with requests.Session() as browser:
        csrf = _login(browser, base_url, email, password, timeout_s)
        made = browser.post(f"{base_url}/api/token/", headers={"X-CSRFToken": csrf, "Referer": base_url + "/"},
                            timeout=timeout_s)
    if made.status_code not in (200, 201):
        raise LabelStudioError(f"Label Studio made no personal access token for {email} ({made.status_code}): "
                               f"{made.text[:200]}; one exists already (revoke it on the Account & Settings page)")
    return made.json()["token"]


def legacy_token(base_url: str, email: str, password: str, *, timeout_s: float = 30.0) -> str:
    """Log in as a person and read their legacy API token (the same at every call; a server that allows
    legacy tokens, as ours does)."""
    base_url = base_url.rstrip("/")
    with requests.Session() as browser:
        _login(browser, base_url, email, password, timeout_s)
        resp = browser.get(f"{base_url}/api/current-user/token", timeout=timeout_s)
    if resp.status_code != 200:
        raise LabelStudioError(f"Label Studio gave no legacy token for {email} ({resp.status_code}): {resp.text[:200]}")
    return resp.json()["token"]
