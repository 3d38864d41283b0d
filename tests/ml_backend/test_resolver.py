"""The backend's fetch rule, against a real HTTP server standing in for our Label Studio (and for a
foreign one): what is refused makes no connection at all; what is fetched follows no redirect, stops at
the byte cap and times out."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from annotator.errors import ImageReadError
from annotator.imaging.io import read_image
from ml_backend.resolver import ImageResolver

TOKEN = "ls-token-0123456789"


class _Recorder(BaseHTTPRequestHandler):
    """Serves /data/upload/ok.jpg, a redirect, an oversized body, a stalled body; records every request."""

    png = b""
    seen: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - the stdlib's name
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/data/upload/ok.jpg":
            self._send(200, self.png)
        elif self.path == "/data/upload/moved.png":
            self.send_response(302)
            self.send_header("Location", "/data/upload/ok.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/data/upload/huge.png":  # no Content-Length: the cap must stop the stream
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * 65536)
        elif self.path == "/data/upload/stall.png":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            time.sleep(2.0)
        else:
            self._send(404, b"no")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(sample_data, http_server):
    _Recorder.png = sorted(sample_data.glob("images/*/*.*"))[0].read_bytes()
    _Recorder.seen = []
    return http_server(_Recorder)


def _resolver(tmp_path: Path, port: int, **kw) -> ImageResolver:
    (tmp_path / "store" / "images").mkdir(parents=True, exist_ok=True)
    return ImageResolver(tmp_path / "store", f"http://127.0.0.1:{port}", TOKEN, **kw)


def test_our_label_studio_is_fetched_with_its_token(tmp_path, server):
    resolver = _resolver(tmp_path, server)
    expected = read_image_bytes(_Recorder.png, tmp_path)
    for ref in ("/data/upload/ok.jpg", f"http://127.0.0.1:{server}/data/upload/ok.jpg",
                f"HTTP://127.0.0.1:{server}/data/upload/ok.jpg"):
        assert np.array_equal(resolver.read(ref), expected)
    assert _Recorder.seen == [("/data/upload/ok.jpg", f"Token {TOKEN}")] * 3


def read_image_bytes(data: bytes, tmp_path: Path) -> np.ndarray:
    path = tmp_path / "expected.jpg"
    path.write_bytes(data)
    return read_image(path)


def test_no_redirect_is_followed(tmp_path, server):
    with pytest.raises(ImageReadError, match=r"our Label Studio answered HTTP 302 \(no redirects are followed\)"):
        _resolver(tmp_path, server).read("/data/upload/moved.png")
    assert [p for p, _ in _Recorder.seen] == ["/data/upload/moved.png"]


def test_the_byte_cap_stops_the_stream_and_a_stalled_server_times_out(tmp_path, server):
    with pytest.raises(ImageReadError, match=r"over the cap of 1000000 bytes; stopped reading"):
        _resolver(tmp_path, server, max_bytes=1_000_000).read("/data/upload/huge.png")
    t0 = time.monotonic()
    with pytest.raises(ImageReadError, match=r"cannot download from our Label Studio \(ConnectionError\)"):
        _resolver(tmp_path, server, timeout_s=(1.0, 0.5)).read("/data/upload/stall.png")
    assert time.monotonic() - t0 < 1.9  # the read timeout, not the server's 2 s stall


def test_the_pixel_cap_is_read_from_the_header(tmp_path, server):
    with pytest.raises(ImageReadError, match=r"over the cap of 0.001 Mpx \(setting max_image_pixels\); refused before decoding"):
        _resolver(tmp_path, server, max_pixels=1000).read("/data/upload/ok.jpg")


def test_a_foreign_port_on_our_host_gets_no_connection_and_the_same_answer_as_a_closed_one(tmp_path, server):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]  # bound, never listening: a closed port
        resolver = _resolver(tmp_path, free_port_other_than(server))
        answers = []
        for port in (server, closed_port):
            with pytest.raises(ImageReadError) as info:
                resolver.read(f"http://127.0.0.1:{port}/data/upload/ok.jpg")
            answers.append(str(info.value).replace(str(port), "PORT"))
    assert answers[0] == answers[1]
    assert "refused: not our Label Studio's scheme, host and port" in answers[0]
    assert _Recorder.seen == []  # the open port never saw a connection, let alone the token


def free_port_other_than(port: int) -> int:
    from annotator.labelstudio.server import free_port

    while (other := free_port()) == port:
        pass
    return other


@pytest.mark.parametrize("ref", [
    7, 3.5, True, {"url": "/data/upload/ok.jpg"}, ["/data/upload/ok.jpg"],
    "file:///etc/passwd", "file:/etc/passwd", "FILE:///etc/passwd", "data:image/png;base64,iVBORw0KGgo=",
    "ftp://127.0.0.1/data/x.png", "gopher://127.0.0.1:70/_x", "/etc/passwd", "images/x.png", "",
    "/data/../api/projects", "/data/%2e%2e/api/projects", "/data/upload/./ok.png", "//evil.example/data/x.png",
    "http://evil.example/data/upload/ok.jpg", "https://127.0.0.1:{port}/data/upload/ok.jpg",
    "http://localhost:{port}/data/upload/ok.jpg", "http://127.0.0.1:{port}@evil.example/data/upload/ok.jpg",
    "http://user:pw@127.0.0.1:{port}/data/upload/ok.jpg", "http://127.0.0.1:{port}\\@evil.example/data/x.png",
    "http://127.0.0.1:{port}/api/projects", "http://[::1]:{port}/data/upload/ok.jpg", "http://127.0.0.1:99999/data/x",
    "/data/upload/ok.jpg\r\nX-Injected: 1", "/data/" + "a" * 5000, "http://0x7f.1:{port}/data/upload/ok.jpg",
])
def test_anything_else_is_refused_without_a_connection(tmp_path, server, ref):
    ref = ref.replace("{port}", str(server)) if isinstance(ref, str) else ref
    with pytest.raises(ImageReadError, match="refused: "):
        _resolver(tmp_path, server).read(ref)
    assert _Recorder.seen == []


def test_local_files_outside_the_store_are_refused(tmp_path, server):
    resolver = _resolver(tmp_path, server)
    (tmp_path / "annotator.db").write_bytes(b"secret")
    for ref in ("/data/local-files/?d=../annotator.db", "/data/local-files/?d=%2E%2E/annotator.db",
                "/data/local-files/?d=images/../../annotator.db", "/data/local-files/?d="):
        with pytest.raises(ImageReadError, match="refused: outside the store"):
            resolver.read(ref)
    assert resolver.local_path("/data/local-files/?d=/etc/passwd") == tmp_path / "store" / "etc" / "passwd"
    loop = tmp_path / "store" / "images" / "loop.png"
    loop.symlink_to(loop)
    for ref in ("/data/local-files/?d=images/loop.png", "/data/local-files/?d=images/a%00b.png"):
        with pytest.raises(ImageReadError, match=r"refused: not a file path \((RuntimeError|OSError|ValueError)\)"):
            resolver.read(ref)
    link = tmp_path / "store" / "images" / "link.png"
    link.symlink_to(tmp_path / "annotator.db")
    with pytest.raises(ImageReadError, match="refused: outside the store"):
        resolver.read("/data/local-files/?d=images/link.png")
    assert _Recorder.seen == []
