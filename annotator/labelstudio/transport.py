"""The HTTP transport to Label Studio's REST API: token auth, JSON answers, transient failures (no
answer, connection refused, 502/503/504) retried with exponential back-off, and errors that say what to do
(down -> how to start it, 401 -> which token, 403/4xx -> what was refused)."""

from __future__ import annotations

import logging
import time
from typing import Any

import requests

from annotator.errors import LabelStudioError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {502, 503, 504}


class Transport:
    """Calls to one Label Studio server with one API token."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 60.0, retries: int = 4,
                 backoff_s: float = 0.5, session: requests.Session | None = None) -> None:
        self.url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs) -> Any:
        """One API call; JSON back (None for 204). Transient failures are retried with back-off."""
        url = f"{self.url}{path}"
        kwargs.setdefault("timeout", self.timeout_s)
        attempts = self.retries + 1 if retry else 1
        last: str = ""
        for attempt in range(attempts):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.info("Label Studio %s %s failed (%s); retry %d/%d in %.1f s", method, path, last, attempt,
                         self.retries, delay)
                time.sleep(delay)
            try:
                resp = self.http.request(method, url, **kwargs)
            except requests.Timeout as exc:
                last = f"no answer within {kwargs['timeout']} s ({type(exc).__name__})"
                continue
            except requests.ConnectionError as exc:
                last = f"cannot connect ({type(exc).__name__})"
                continue
            if resp.status_code in TRANSIENT_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            return self._decode(method, path, resp)
        raise LabelStudioError(
            f"Label Studio at {self.url} is down or too slow: {method} {path}: {last} after {attempts} "
            "attempt(s); check `annotator labelstudio status` (start it with `annotator labelstudio start`)"
        )

    def _decode(self, method: str, path: str, resp: requests.Response) -> Any:
        if resp.status_code == 401:
            raise LabelStudioError(
                f"Label Studio at {self.url} refused our API token (401 Unauthorized): "
                "ANNOTATOR_LABELSTUDIO_TOKEN must be the token of a user of that server (its Account & "
                "Settings page shows it); the bundled server's token is set when its data folder is created"
            )
        if resp.status_code == 403:
            raise LabelStudioError(f"Label Studio forbids {method} {path} for our user (403): {resp.text[:300]}")
        if resp.status_code >= 400:
            raise LabelStudioError(f"Label Studio answered {resp.status_code} to {method} {path}: {resp.text[:500]}")
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise LabelStudioError(f"Label Studio answered {method} {path} with non-JSON: {resp.text[:200]}") from exc

    def health(self) -> bool:
        try:
            resp = self.http.get(f"{self.url}/health", timeout=5)
            return resp.status_code == 200
        except requests.RequestException:
            return False
