"""What the backend may read for a task: only what our Label Studio serves, nothing a task names elsewhere.

A task's ``image`` is accepted in two forms, both under Label Studio's ``/data/`` prefix:

- a relative path, ``/data/local-files/?d=images/ab/x.png`` (what our adapter writes), or
- an absolute URL whose scheme, host and port are exactly our Label Studio's (``settings.labelstudio_base_url``).

Everything else is refused *before any connection is made*, with the same answer whatever listens
there: a number, a dict, ``file:``, ``data:``, another host or port, user info in the URL, ``..`` segments,
backslashes, control characters. A ``/data/local-files/`` path is read from the store directly (the folder
Label Studio serves); any other accepted path is downloaded from our Label Studio with its token,
without redirects, with connect and read timeouts, and a byte cap checked while streaming. The pixel
count is read from the image header and capped before decoding.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import numpy as np

from annotator.errors import ImageReadError
from annotator.imaging.limits import ImageLimits, declared_size_in

log = logging.getLogger(__name__)

SERVED_PREFIX = "/data/"
LOCAL_FILES_PATH = "/data/local-files"
MAX_REF_CHARS = 4096
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 50_000_000
TIMEOUT_S = (5.0, 30.0)  # (connect, read): a stalled Label Studio never holds a request thread for long
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme, 0))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _shown(ref: object) -> str:
    """The task's value as the error names it (short; never more than 120 characters)."""
    text = ref if isinstance(ref, str) else f"{type(ref).__name__} {ref!r}"
    return text if len(text) <= 120 else text[:117] + "..."


class ImageResolver:
    """Task data ``image`` -> HxW uint8 pixels, from the store or from our Label Studio (with its token)."""

    def __init__(self, store_path: Path, labelstudio_url: str | None = None, labelstudio_token: str | None = None,
                 *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
                 timeout_s: tuple[float, float] = TIMEOUT_S):
        self.store_path = Path(store_path).resolve()
        self.labelstudio_url = labelstudio_url.rstrip("/") if labelstudio_url else None
        self.origin = Origin.of(self.labelstudio_url) if self.labelstudio_url else None
        self.labelstudio_token = labelstudio_token
        self.max_bytes, self.max_pixels, self.timeout_s = max_bytes, max_pixels, timeout_s
        self._http = None

    # -- the rule ---------------------------------------------------------------------------------
    def served_path(self, ref: object) -> str:
        """The path and query under our Label Studio that ``ref`` names, or ImageReadError (no I/O here)."""
        def refuse(why: str) -> ImageReadError:
            return ImageReadError(_shown(ref), f"refused: {why}; the backend reads only what our Label Studio "
                                               f"serves under {SERVED_PREFIX} (a relative path or {self.origin or 'its URL'})")

        if not isinstance(ref, str):
            raise refuse(f"a task image must be a URL string, not a {type(ref).__name__}")
        if len(ref) > MAX_REF_CHARS:
            raise refuse(f"longer than {MAX_REF_CHARS} characters")
        if any(ch.isspace() or ord(ch) < 0x20 or ch in "\\\x7f" for ch in ref):
            raise refuse("white space, control characters or backslashes in the URL")
        try:
            parts = urlsplit(ref)
            port = parts.port
        except ValueError as exc:
            raise refuse(f"not a URL ({exc})") from exc
        if parts.scheme or parts.netloc:
            if self.origin is None:
                raise refuse("an absolute URL, and no Label Studio URL is configured")
            scheme = parts.scheme.lower()
            theirs = Origin(scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme, 0))
            if theirs != self.origin or parts.username is not None or parts.password is not None:
                raise refuse("not our Label Studio's scheme, host and port")
        elif not ref.startswith("/"):
            raise refuse("neither a path on our Label Studio nor its URL")
        if not parts.path.startswith(SERVED_PREFIX):
            raise refuse(f"the path is not under {SERVED_PREFIX}")
        if {".", ".."} & set(unquote(parts.path).split("/")):
            raise refuse("'.' or '..' in the path")
        return urlunsplit(("", "", parts.path, parts.query, ""))

    def check(self, ref: object) -> str:
        """``served_path``, and for a store file that it stays inside the store (nothing is read)."""
        served = self.served_path(ref)
        self.local_path(served)
        return served

    # -- reading ----------------------------------------------------------------------------------
    def local_path(self, served: str) -> Path | None:
        """The store file a ``/data/local-files/?d=`` path names (decoded once, as Label Studio does)."""
        parts = urlsplit(served)
        if parts.path.rstrip("/") != LOCAL_FILES_PATH:
            return None
        rel = parse_qs(parts.query).get("d", [""])[0]
        try:
            path = (self.store_path / rel.lstrip("/")).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise ImageReadError(served, f"refused: not a file path ({type(exc).__name__})") from exc
        if not rel or not path.is_relative_to(self.store_path):
            raise ImageReadError(served, f"refused: outside the store Label Studio serves ({self.store_path})")
        return path

    def read(self, ref: object) -> np.ndarray:
        from annotator.imaging.io import read_image

        served = self.served_path(ref)
        path = self.local_path(served)
        if path is not None:
            return read_image(path)
        return self._download(served)

    def _download(self, served: str) -> np.ndarray:
        import requests

        if not self.labelstudio_url:
            raise ImageReadError(served, "a Label Studio path, but no Label Studio URL is configured")
        url = self.labelstudio_url + served
        if self._http is None:
            self._http = requests.Session()
            self._http.trust_env = False  # no proxy from the environment sees our token
            if self.labelstudio_token:  # a legacy token or a personal access token
                from annotator.labelstudio.auth import ApiToken

                self._http.auth = ApiToken(self.labelstudio_url, self.labelstudio_token)
        try:
            with self._http.get(url, timeout=self.timeout_s, allow_redirects=False, stream=True) as resp:
                if resp.status_code != 200:
                    raise ImageReadError(served, f"our Label Studio answered HTTP {resp.status_code} (no redirects "
                                                 "are followed)")
                data = self._capped_body(resp, served)
        except requests.RequestException as exc:
            raise ImageReadError(served, f"cannot download from our Label Studio ({type(exc).__name__})") from exc
        return self._decode(data, served)

    def _capped_body(self, resp, served: str) -> bytes:
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageReadError(served, f"{int(declared)} bytes declared, over the cap of {self.max_bytes}")
        buf = bytearray()
        for chunk in resp.iter_content(chunk_size=256 * 1024):
            buf += chunk
            if len(buf) > self.max_bytes:
                raise ImageReadError(served, f"over the cap of {self.max_bytes} bytes; stopped reading")
        return bytes(buf)

    def _decode(self, data: bytes, served: str) -> np.ndarray:
        import cv2

        try:  # the size the header declares, checked before a decoder allocates a pixel
            width, height, _ = declared_size_in(io.BytesIO(data), served)
        except ImageReadError as exc:
            raise ImageReadError(served, "downloaded bytes are not an image") from exc
        ImageLimits(max_pixels=self.max_pixels).check(served, width, height)
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise ImageReadError(served, "downloaded bytes are not an image")
        return pixels
