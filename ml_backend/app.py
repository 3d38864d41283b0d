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

import numpy as np

from annotator.errors import AnnotatorError, ImageReadError, ModelError
from ml_backend.resolver import ImageResolver

__all__ = ["BackendApp", "EventLog", "HttpError", "ImageResolver", "token_ok"]

log = logging.getLogger(__name__)

JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_TASKS = 100  # tasks per /predict request (Label Studio's own prediction batch size)
PREDICT_CHUNK = 16  # images decoded and predicted at a time: memory stays bounded whatever the batch


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
               411: "Length Required", 413: "Payload Too Large", 422: "Unprocessable Entity",
               500: "Internal Server Error", 503: "Service Unavailable"}


def _id_of(value: object) -> object:
    """The id of a payload part that may be a dict with an id, a bare id, or junk (then None)."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


class EventLog:
    """Webhook events, one JSON line each (only the ids and the action: the protocol reads the rest)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        self.count = 0
        self._lock = threading.Lock()

    def record(self, payload: dict) -> dict:
        task = payload.get("task")
        data = task.get("data") if isinstance(task, dict) else None
        key = data.get("annotator_key") if isinstance(data, dict) else None
        action = payload.get("action")
        event = {
            "received_at": time.time(),
            "action": action if isinstance(action, str) else None,
            "project": _id_of(payload.get("project")),
            "task": _id_of(task),
            "annotation": _id_of(payload.get("annotation")),
            "annotator_key": key if isinstance(key, str) else None,
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
        # the body's "hostname" and "access_token" are ignored: images come only from the Label Studio URL
        # and token this backend was started with, never from one a caller names
        return {"model_version": self.holder.get().model_version}

    def versions(self, body: dict) -> dict:
        return {"versions": [self.holder.get().model_version]}

    def predict(self, body: dict) -> dict:
        from annotator.labelstudio.tasks import brush_result
        from annotator.segmentation.postprocess import postprocess

        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise HttpError(400, "the request needs 'tasks': a non-empty list of Label Studio tasks")
        if len(tasks) > MAX_TASKS:
            raise HttpError(413, f"{len(tasks)} tasks in one request; at most {MAX_TASKS}: send smaller batches")
        refs: list[tuple[int, object, str]] = []
        problems: list[dict] = []
        for i, task in enumerate(tasks):  # every reference is checked before anything is read
            data = task.get("data") if isinstance(task, dict) else None
            ref = data.get("image") if isinstance(data, dict) else None
            try:
                if ref is None or ref == "":
                    raise ImageReadError(f"task {_id_of(task)}", "task data has no 'image'")
                refs.append((i, _id_of(task), self.images.check(ref)))
            except ImageReadError as exc:
                problems.append({"index": i, "task": _id_of(task), "error": str(exc)})
        predictor = self.holder.get()
        threshold = getattr(predictor, "threshold", 0.5)
        share = getattr(predictor, "min_region_share", 0.05)
        results = []
        for start in range(0, len(refs) if not problems else 0, PREDICT_CHUNK):  # bounded memory per chunk
            images: list[np.ndarray] = []
            for i, task_id, served in refs[start:start + PREDICT_CHUNK]:
                try:
                    images.append(self.images.read(served))
                except ImageReadError as exc:
                    problems.append({"index": i, "task": task_id, "error": str(exc)})
            if problems:  # go on reading, to name every bad task; predict nothing more
                continue
            with self._predict_lock:
                probs = predictor.predict_proba(images)
            for prob in probs:
                mask = postprocess(prob, threshold, share)
                results.append({"result": [brush_result(mask)], "score": round(certainty(prob), 6),
                                "model_version": predictor.model_version})
        if problems:
            raise HttpError(422, f"{len(problems)} of {len(tasks)} task image(s) cannot be read; nothing predicted",
                            tasks=problems)
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
        except Exception as exc:  # a bug: logged with its traceback, answered as one, the server keeps serving
            log.exception("%s %s failed", method, path)
            status, payload = 500, {"error": f"internal error ({type(exc).__name__}); see the backend's log"}
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
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0:
            raise HttpError(400, "Content-Length is negative")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
        raw = environ["wsgi.input"].read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
            raise HttpError(400, f"request body is not JSON: {str(exc)[:200]}") from exc
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return body
