"""Hardening, seen from outside: our ML backend process (waitress) refuses every image a task names that
our Label Studio does not serve, answers a closed and an open port alike and sends its token nowhere;
bad bodies get a 4xx naming the problem. Label Studio itself runs with its SSRF protection on."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import requests

from annotator.errors import LabelStudioError
from annotator.labelstudio.client import LabelStudio

pytestmark = pytest.mark.integration


def _auth(settings):
    return {"Authorization": f"Token {settings.backend_token}"}


def _predict(backend, settings, images, timeout=60):
    tasks = [{"id": i, "data": {"image": im}} for i, im in enumerate(images, start=1)]
    return requests.post(backend.url + "/predict", json={"tasks": tasks}, headers=_auth(settings), timeout=timeout)


class Listener:
    """An open port on 127.0.0.1 that records every connection and the bytes it was sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    self.received.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def test_served_by_waitress_not_wsgiref(backend):
    resp = requests.get(backend.url + "/health", timeout=10)
    assert resp.status_code == 200 and resp.headers["Server"] == "cxr-annotator"


def test_an_internal_port_never_receives_our_token_and_answers_like_a_closed_port(ls_settings, backend, listener):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound but not listening: a closed port
        closed_port = closed.getsockname()[1]
        answers = {}
        for port in (listener.port, closed_port):
            resp = _predict(backend, ls_settings, [f"http://127.0.0.1:{port}/x.png"])
            answers[port] = (resp.status_code, resp.text.replace(str(port), "PORT"))
    assert answers[listener.port] == answers[closed_port]
    status, text = answers[closed_port]
    assert status == 422 and "refused: not our Label Studio's scheme, host and port" in text
    assert listener.received == []  # no connection at all, so no token


def test_non_urls_and_foreign_urls_get_a_422_naming_each_task(ls_settings, backend, listener, stored_images):
    ls_port = ls_settings.labelstudio_port
    bad = [5, 2.5, {"url": "x"}, ["x"], True, "file:///etc/passwd", "file:/etc/passwd",
           "data:image/png;base64,iVBORw0KGgo=", f"http://127.0.0.1:{listener.port}/data/upload/x.png",
           f"http://localhost:{ls_port}/data/upload/x.png", f"http://127.0.0.1:{ls_port}@127.0.0.1:{listener.port}/data/x",
           "//127.0.0.1:%d/data/x.png" % listener.port, "/data/../api/projects", "/api/projects",
           "/data/local-files/?d=../annotator.db"]
    resp = _predict(backend, ls_settings, bad)
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == f"{len(bad)} of {len(bad)} task image(s) cannot be read; nothing predicted"
    assert [t["task"] for t in body["tasks"]] == list(range(1, len(bad) + 1))
    assert all("refused: " in t["error"] for t in body["tasks"]), body["tasks"]
    assert "a task image must be a URL string, not a int" in body["tasks"][0]["error"]
    assert listener.received == []


def test_our_label_studio_url_in_full_is_accepted(ls_settings, backend, stored_images):
    rel = stored_images[0].path.relative_to(ls_settings.store_path).as_posix()
    url = f"http://127.0.0.1:{ls_settings.labelstudio_port}/data/local-files/?d={rel}"
    resp = _predict(backend, ls_settings, [url, f"/data/local-files/?d={rel}"])
    assert resp.status_code == 200
    first, second = resp.json()["results"]
    (a,), (b,) = first["result"], second["result"]
    assert a["value"]["rle"] == b["value"]["rle"] and a["original_width"] == stored_images[0].pixels.shape[1]


def test_bad_bodies_get_a_4xx_with_the_reason(ls_settings, backend):
    post = lambda path, **kw: requests.post(backend.url + path, headers=_auth(ls_settings), timeout=30, **kw)
    too_many = post("/predict", json={"tasks": [{"id": i, "data": {"image": "/data/x.png"}} for i in range(101)]})
    assert too_many.status_code == 413
    assert too_many.json()["error"] == "101 tasks in one request; at most 100: send smaller batches"
    cases = {
        "/predict": [({"tasks": {"a": 1}}, 400, "the request needs 'tasks'"), ({"tasks": "x"}, 400, "the request needs"),
                     ({"tasks": [7, None]}, 422, "2 of 2 task image(s) cannot be read")],
    }
    for path, items in cases.items():
        for body, status, text in items:
            resp = post(path, json=body)
            assert (resp.status_code, text in resp.json()["error"]) == (status, True), (body, resp.text)
    deep = post("/predict", data=b"[" * 100000 + b"]" * 100000)
    assert deep.status_code == 400 and deep.json()["error"].startswith("request body is not JSON")
    assert post("/predict", data=b"[1, 2]").json() == {"error": "request body must be a JSON object"}
    hook = post("/webhook", json={"action": ["x"], "project": {"id": [1]}, "task": 5, "annotation": "a1"})
    assert hook.status_code == 200 and hook.json() == {"status": "ok"}
    assert requests.get(backend.url + "/health", timeout=10).json()["status"] == "UP"  # still serving


def test_label_studio_runs_with_ssrf_protection_on_only_127_0_0_1_let_through(ls_settings, ls_server, listener):
    environ = Path(f"/proc/{ls_server.pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    assert (env["LABEL_STUDIO_SSRF_PROTECTION_ENABLED"], env["LABEL_STUDIO_ML_BLOCK_LOCAL_IP"]) == ("true", "true")
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-ssrf")
    for url in (f"http://127.0.0.2:{listener.port}/webhook", f"http://10.0.0.1:{listener.port}/webhook",
                f"http://169.254.169.254:{listener.port}/latest", f"http://192.168.0.1:{listener.port}/webhook"):
        with pytest.raises(LabelStudioError, match=r"POST /api/webhooks .*\(403\): .*URL resolves to a reserved network address"):
            ls.request("POST", "/api/webhooks", json={"project": project_id, "url": url, "send_payload": True})
    for url in (f"http://127.0.0.2:{listener.port}", f"http://10.0.0.1:{listener.port}"):
        with pytest.raises(LabelStudioError, match=r"POST /api/ml .*URL resolves to a reserved network address"):
            ls.request("POST", "/api/ml", json={"project": project_id, "url": url, "title": "x"}, retry=False)
    allowed = ls.request("POST", "/api/webhooks", json={"project": project_id, "send_payload": True,
                                                        "url": f"http://127.0.0.1:{listener.port}/webhook"})
    assert allowed["url"] == f"http://127.0.0.1:{listener.port}/webhook"
    ls.request("DELETE", f"/api/webhooks/{allowed['id']}")
    assert listener.received == []  # refusals are decided on the address, before any connection


def test_label_studio_log_holds_no_secret(ls_settings, ls_server):
    text = Path(ls_server.log_path).read_text(errors="replace")
    for secret in (ls_settings.labelstudio_password, ls_settings.labelstudio_token, ls_settings.backend_token):
        assert secret not in text
