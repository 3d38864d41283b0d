"""How a Label Studio API token becomes an ``Authorization`` header: the one place that knows.

Label Studio 1.23 has two kinds of token (its docs, "Access tokens"; label-studio-sdk's
``tokens/client_ext.py`` tells them apart the same way):

- a **legacy token** (40 hex characters, ``LABEL_STUDIO_USER_TOKEN``; the bundled server's), sent as
  ``Authorization: Token <key>``; an organisation may have them switched off;
- a **personal access token** (PAT, the default for new organisations): a JWT *refresh* token. It is never
  sent to the API itself: ``POST /api/token/refresh/ {"refresh": PAT}`` returns a short-lived *access* token
  (5 minutes), sent as ``Authorization: Bearer <access>`` and renewed before it expires, or once when the
  server refuses it (401).

``ApiToken(url, token)`` is a ``requests`` auth object doing that; give it to a session (``http.auth``).
The JWT is read (not verified: the server does that) only for its ``token_type`` and ``exp`` claims.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time

import requests

from annotator.errors import LabelStudioError

RENEW_BEFORE_S = 30.0  # renew an access token this long before it expires


def jwt_claims(token: str) -> dict | None:
    """The claims of a JWT (unverified), or None when ``token`` is not one (a legacy token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def token_kind(token: str) -> str:
    """``legacy``, ``pat`` (a JWT refresh token) or ``access`` (a JWT access token, used as it is)."""
    claims = jwt_claims(token)
    if claims is None:
        return "legacy"
    return "pat" if claims.get("token_type") == "refresh" else "access"


class ApiToken(requests.auth.AuthBase):
    """Authorization for one Label Studio server with one token of either kind (thread-safe)."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.url = base_url.rstrip("/")
        self.token = token
        self.kind = token_kind(token)
        self.timeout_s = timeout_s
        self._access: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        if self.kind == "pat":
            exp = (jwt_claims(token) or {}).get("exp")
            if isinstance(exp, (int, float)) and exp < time.time():
                raise LabelStudioError(
                    "the Label Studio personal access token (ANNOTATOR_LABELSTUDIO_TOKEN) has expired; make a new "
                    "one on its Account & Settings page"
                )

    @property
    def scheme(self) -> str:
        return "Token" if self.kind == "legacy" else "Bearer"

    def header(self) -> str:
        if self.kind == "legacy":
            return f"Token {self.token}"
        if self.kind == "access":
            return f"Bearer {self.token}"
        with self._lock:
            if self._access is None or time.time() > self._expires_at - RENEW_BEFORE_S:
                self._refresh()
            return f"Bearer {self._access}"

    def renew(self) -> bool:
        """Drop the access token so the next request fetches a new one; False for tokens that cannot renew."""
        if self.kind != "pat":
            return False
        with self._lock:
            self._access = None
        return True

    def _refresh(self) -> None:
        url = f"{self.url}/api/token/refresh/"
        try:
            resp = requests.post(url, json={"refresh": self.token}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise LabelStudioError(f"Label Studio at {self.url} is down or too slow: POST /api/token/refresh/: "
                                   f"{type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise LabelStudioError(
                f"Label Studio at {self.url} refused our personal access token ({resp.status_code} on "
                f"/api/token/refresh/): it was revoked, has expired, or belongs to another server; make a new one "
                "on its Account & Settings page and set ANNOTATOR_LABELSTUDIO_TOKEN"
            )
        try:
            access = resp.json()["access"]
        except (ValueError, KeyError, TypeError) as exc:
            raise LabelStudioError(f"Label Studio answered /api/token/refresh/ without an access token: "
                                   f"{resp.text[:200]}") from exc
        exp = (jwt_claims(access) or {}).get("exp")
        self._access = access
        self._expires_at = float(exp) if isinstance(exp, (int, float)) else time.time() + 60.0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.header()
        return request
