"""The demo reuses an ML backend that already serves only when it is this workspace's: one that refuses
the workspace's token (a backend of another workspace left running) is a clear error, not a silent 401
from Label Studio later. Real HTTP servers on loopback stand in for the two backends."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest

from annotator.config import load_settings
from annotator.errors import AnnotatorError
from workflows.demo import start_backend

TOKEN = "this-workspaces-backend-token-0123"


class _Backend(BaseHTTPRequestHandler):
    accepted_token = TOKEN

    def do_GET(self):  # noqa: N802 - the http.server interface
        ok = self.path == "/health" or self.headers.get("Authorization") == f"Token {self.accepted_token}"
        body = b'{"status": "UP"}' if ok else b'{"error": "unauthorized"}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _OtherWorkspacesBackend(_Backend):
    accepted_token = "another-workspaces-token-98765432"


def test_a_backend_of_this_workspace_is_reused(http_server, tmp_path):
    settings = load_settings(workspace=tmp_path / "ws", backend_port=http_server(_Backend), backend_token=TOKEN)
    assert start_backend(settings) is None  # nothing started: the one serving is ours


def test_a_backend_that_refuses_our_token_is_named_not_reused(http_server, tmp_path):
    port = http_server(_OtherWorkspacesBackend)
    settings = load_settings(workspace=tmp_path / "ws", backend_port=port, backend_token=TOKEN)
    with pytest.raises(AnnotatorError, match=rf"another ML backend serves http://127.0.0.1:{port}: it refuses "
                                             r"this workspace's token.*ANNOTATOR_BACKEND_PORT"):
        start_backend(settings)
