"""Label Studio's ML backend protocol as a small WSGI app (no framework; served by ``ml_backend.server``).

    GET  /health   -> {"status": "UP", "model_version", "model_class", "loads"}   (no token needed)
    POST /setup    -> {"model_version"}            (the loaded network's; nothing is loaded here)
    POST /predict  -> {"results": [one per task, in order: {"result": [brush RLE], "score", "model_version"}]}
    POST /webhook  -> {"status": "ok"}             (the event is appended to a JSONL file; nothing heavy)
    GET  /versions -> {"versions": [model_version]}

Every route but /health needs the token: ``Authorization: Token <t>`` or ``Bearer <t>``, or HTTP basic
auth whose password is the token (what Label Studio sends when the backend is connected with
``auth_method=BASIC_AUTH``). The ``model_version`` of /setup and of every prediction is the same string,
so Label Studio never asks twice for the same task.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from annotator.errors import AnnotatorError, ImageReadError, ModelError

log = logging.getLogger(__name__)

JSON = "application/json"
MAX_BODY_BYTES = 64 * 1024 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
               413: "Payload Too Large", 422: "Unprocessable Entity", 500: "Internal Server Error",
               503: "Service Unavailable"}


class ImageResolver:
    """Task data ``image`` -> HxW uint8 pixels: from the local store, else from Label Studio with its token."""

    def __init__(self, store_path: Path, labelstudio_url: str | None = None, labelstudio_token: str | None = None):
        self.store_path = Path(store_path).resolve()
        self.labelstudio_url = labelstudio_url.rstrip("/") if labelstudio_url else None
        self.labelstudio_token = labelstudio_token
        self._http = None

    def local_path(self, url: str) -> Path | None:
        parts = urlsplit(url)
        if parts.path.rstrip("/").endswith("/data/local-files"):
            rel = parse_qs(parts.query).get("d", [""])[0]
            path = (self.store_path / unquote(rel)).resolve()
            if not path.is_relative_to(self.store_path):
                raise ImageReadError(rel, f"outside the store {self.store_path}")
            return path
        return None

    def read(self, url: str) -> np.ndarray:
        from annotator.imaging.io import read_image

        path = self.local_path(url)
        if path is not None:
            return read_image(path)
        return self._download(url)

    def _download(self, url: str) -> np.ndarray:
        import cv2
        import requests

        if url.startswith("/"):
            if not self.labelstudio_url:
                raise ImageReadError(url, "a Label Studio path, but no Label Studio URL is known")
            url = self.labelstudio_url + url
        if self._http is None:
            self._http = requests.Session()
            if self.labelstudio_token:
                self._http.headers["Authorization"] = f"Token {self.labelstudio_token}"
        try:
            resp = self._http.get(url, timeout=30)
        except requests.RequestException as exc:
            raise ImageReadError(url, f"cannot download ({type(exc).__name__})") from exc
        if resp.status_code != 200:
            raise ImageReadError(url, f"download answered HTTP {resp.status_code}")
        pixels = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise ImageReadError(url, "downloaded bytes are not an image")
        return pixels


class EventLog:
    """Webhook events, one JSON line each (only the ids and the action: the protocol reads the rest)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        self.count = 0
        self._lock = threading.Lock()

    def record(self, payload: dict) -> dict:
        annotation = payload.get("annotation") or {}
        task = payload.get("task") or {}
        project = payload.get("project") or {}
        event = {
            "received_at": time.time(),
            "action": payload.get("action"),
            "project": project.get("id") if isinstance(project, dict) else project,
            "task": task.get("id") if isinstance(task, dict) else task,
            "annotation": annotation.get("id") if isinstance(annotation, dict) else annotation,
            "annotator_key": (task.get("data") or {}).get("annotator_key") if isinstance(task, dict) else None,
        }
        with self._lock:
            self.count += 1
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as fh:
                    fh.write(json.dumps(event) + "\n")
        return event


def token_ok(header: str | None, token: str) -> bool:
    if not header or not token:
        return False
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme in ("token", "bearer"):
        return hmac.compare_digest(value.strip().encode(), token.encode())
    if scheme == "basic":
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), token.encode())
    return False


def certainty(prob: np.ndarray) -> float:
    """Mean |2p - 1| over the image: 1 when every pixel is sure, 0 when all are 0.5."""
    return float(np.mean(np.abs(2.0 * prob.astype(np.float32) - 1.0)))


@dataclass
class BackendApp:
    """The WSGI callable. ``holder`` gives the current predictor (``ml_backend.holder.PredictorHolder``)."""

    holder: object
    token: str
    images: ImageResolver
    events: EventLog
    on_event: Callable[[dict], None] | None = None

    def __post_init__(self) -> None:
        self._predict_lock = threading.Lock()  # one batch at a time: the CPU threads are the network's

    # -- routes ----------------------------------------------------------------------------------
    def health(self, body: dict) -> dict:
        predictor = self.holder._predictor  # no swap check here: health must be instant
        return {"status": "UP", "model_class": "cxr-annotator lung segmentation",
                "model_version": predictor.model_version, "loads": getattr(self.holder, "loads", None)}

    def setup(self, body: dict) -> dict:
        predictor = self.holder.get()
        if body.get("hostname") and not self.images.labelstudio_url:
            self.images.labelstudio_url = str(body["hostname"]).rstrip("/")
        if body.get("access_token") and not self.images.labelstudio_token:
            self.images.labelstudio_token = str(body["access_token"])
        return {"model_version": predictor.model_version}

    def versions(self, body: dict) -> dict:
        return {"versions": [self.holder.get().model_version]}

    def predict(self, body: dict) -> dict:
        from annotator.labelstudio.client import brush_result
        from annotator.segmentation.postprocess import postprocess

        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise HttpError(400, "the request needs 'tasks': a non-empty list of Label Studio tasks")
        images: list[np.ndarray] = []
        problems: list[dict] = []
        for i, task in enumerate(tasks):
            url = (task.get("data") or {}).get("image") if isinstance(task, dict) else None
            if not url:
                problems.append({"index": i, "task": task.get("id") if isinstance(task, dict) else None,
                                 "error": "task data has no 'image'"})
                continue
            try:
                images.append(self.images.read(url))
            except ImageReadError as exc:
                problems.append({"index": i, "task": task.get("id"), "error": str(exc)})
        if problems:
            raise HttpError(422, f"{len(problems)} of {len(tasks)} task image(s) cannot be read; nothing predicted",
                            tasks=problems)
        predictor = self.holder.get()
        with self._predict_lock:
            probs = predictor.predict_proba(images)
        threshold = getattr(predictor, "threshold", 0.5)
        share = getattr(predictor, "min_region_share", 0.05)
        results = []
        for prob in probs:
            mask = postprocess(prob, threshold, share)
            results.append({"result": [brush_result(mask)], "score": round(certainty(prob), 6),
                            "model_version": predictor.model_version})
        return {"results": results, "model_version": predictor.model_version}

    def webhook(self, body: dict) -> dict:
        event = self.events.record(body)
        if self.on_event is not None:
            self.on_event(event)
        return {"status": "ok"}

    ROUTES = {
        ("GET", "/health"): ("health", False),
        ("GET", "/"): ("health", False),
        ("POST", "/setup"): ("setup", True),
        ("POST", "/predict"): ("predict", True),
        ("POST", "/webhook"): ("webhook", True),
        ("GET", "/versions"): ("versions", True),
        ("POST", "/versions"): ("versions", True),
    }

    # -- WSGI ------------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        t0 = time.perf_counter()
        try:
            route = self.ROUTES.get((method, path))
            if route is None:
                known = sorted({p for _, p in self.ROUTES})
                if any(p == path for _, p in self.ROUTES):
                    raise HttpError(405, f"{method} not allowed on {path}")
                raise HttpError(404, f"no route {path}; routes: {', '.join(known)}")
            name, needs_token = route
            if needs_token and not token_ok(environ.get("HTTP_AUTHORIZATION"), self.token):
                raise HttpError(
                    401,
                    "missing or wrong token: send 'Authorization: Token <ANNOTATOR_BACKEND_TOKEN>' (Label Studio: "
                    "connect the backend with basic auth, password = that token)",
                )
            body = self._read_json(environ) if method == "POST" else {}
            status, payload = 200, getattr(self, name)(body)
        except HttpError as exc:
            status, payload = exc.status, exc.body
        except AnnotatorError as exc:  # a model or image problem: say it, keep serving
            log.error("%s %s: %s", method, path, exc)
            status, payload = 503 if isinstance(exc, ModelError) else 422, {"error": str(exc)}
        body_bytes = json.dumps(payload).encode()
        log.debug("%s %s -> %d in %.1f ms", method, path, status, (time.perf_counter() - t0) * 1e3)
        start_response(f"{status} {STATUS_TEXT.get(status, '')}",
                       [("Content-Type", JSON), ("Content-Length", str(len(body_bytes)))])
        return [body_bytes]

    @staticmethod
    def _read_json(environ: dict) -> dict:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
        raw = environ["wsgi.input"].read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise HttpError(400, f"request body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return body
