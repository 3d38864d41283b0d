"""The HTTP transport to Label Studio's REST API: token auth (a legacy token or a personal access token,
``annotator.labelstudio.auth``), JSON answers, transient failures (no answer, connection refused,
502/503/504) retried with exponential back-off, and errors that say what to do (down -> how to start it,
401 -> which token, 403/4xx -> what was refused).

A POST that creates something is never retried blindly: ``create_once`` looks the object up (by what makes
it ours: a title, a path, a URL) before each retry, since a request that timed out may have landed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from annotator.errors import LabelStudioError
from annotator.labelstudio.auth import ApiToken

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {502, 503, 504}


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


class Transport:
    """Calls to one Label Studio server with one API token."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 60.0, retries: int = 4,
                 backoff_s: float = 0.5, session: requests.Session | None = None) -> None:
        self.url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.http = session or requests.Session()
        self.http.auth = self.auth = ApiToken(self.url, token, timeout_s=timeout_s)

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
            if resp.status_code == 401 and self.auth.renew():  # an access token refused: one fresh one
                try:
                    resp = self.http.request(method, url, **kwargs)
                except requests.RequestException as exc:
                    log.info("Label Studio %s %s failed after renewing the access token: %s", method, path, exc)
            return self._decode(method, path, resp)
        raise LabelStudioError(
            f"Label Studio at {self.url} is down or too slow: {method} {path}: {last} after {attempts} "
            "attempt(s); check `annotator labelstudio status` (start it with `annotator labelstudio start`)"
        )

    def create_once(self, path: str, payload: dict, find: Callable[[], dict | None]) -> dict:
        """POST ``payload`` to ``path`` to create one object, unless ``find()`` finds it. A transient failure
        is retried only after ``find()`` says the failed request did not land: never created twice."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
                found = find()
                if found is not None:
                    log.info("POST %s had landed before its answer was lost; not created again", path)
                    return found
            try:
                return self.request("POST", path, json=payload, retry=False)
            except LabelStudioError as exc:
                if "down or too slow" not in str(exc) or attempt + 1 == attempts:
                    raise
                log.info("POST %s failed (%s); checking whether it landed before retrying", path, exc)
        raise LabelStudioError(f"POST {path} failed after {attempts} attempts")  # pragma: no cover

    def _decode(self, method: str, path: str, resp: requests.Response) -> Any:
        if resp.status_code == 401:
            raise LabelStudioError(
                f"Label Studio at {self.url} refused our API token (401 Unauthorized): "
                "ANNOTATOR_LABELSTUDIO_TOKEN must be the token of a user of that server (its Account & "
                "Settings page shows it: a personal access token, or a legacy token where the organisation "
                f"allows them; we sent a {self.auth.kind} token as '{self.auth.scheme}'); the bundled server's "
                "token is set when its data folder is created"
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
            resp = self.http.get(f"{self.url}/health", timeout=5, auth=_no_auth)  # /health needs no token
            return resp.status_code == 200
        except requests.RequestException:
            return False
