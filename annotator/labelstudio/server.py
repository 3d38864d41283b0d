"""The bundled Label Studio server's lifecycle: start, status, stop, all by our own process id.

Label Studio runs as ``python -m label_studio.server start`` on ``settings.labelstudio_host:port`` with its
data (SQLite, media) in ``settings.labelstudio_data``. What we learned running it here:

- The admin user and its API token are created from ``LABEL_STUDIO_USERNAME/_PASSWORD/_USER_TOKEN``; the
  fixed (legacy) token works only if ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`` on the very first start.
- Bare ``HOST``, ``PORT``, ``USERNAME``, ``PASSWORD`` (and a few more) variables leak into its settings, so
  the child environment drops them and sets every value under the ``LABEL_STUDIO_`` prefix.
- A busy port silently moves it to the next free one: we refuse a busy port before starting, and check the
  port it reports in its log.
- Its SSRF protection stays on (``SSRF_PROTECTION_ENABLED``, ``ML_BLOCK_LOCAL_IP``): webhooks, ML backends
  and exports may not reach private, link-local or loopback addresses, except 127.0.0.1 (our ML backend).
  Label Studio has no allow-list, so its default banned subnets are replaced by the same list with
  127.0.0.0/8 minus 127.0.0.1 (``USE_DEFAULT_BANNED_SUBNETS=false``, ``USER_ADDITIONAL_BANNED_SUBNETS``).
- Offline: analytics, Sentry and the version check are off.
- Images are served by ``/data/local-files/?d=<path under the store>``, only below a project's local-storage
  entry (``annotator.labelstudio.client`` adds one per project).
- The first start migrates its database for ~30 s. We migrate once into a template folder under
  ``$XDG_CACHE_HOME/cxr-annotator`` (default ``~/.cache``), keyed by the Label Studio version, with no user
  in it (no secret leaves the workspace), and copy it into each new workspace; its first start there
  creates the workspace's user and token (~3 s). Label Studio makes its own Django ``SECRET_KEY`` per
  data folder (``.env``, mode 0600; the template's is removed).

Public API: ``start_server(settings) -> ServerInfo``, ``server_status(settings) -> ServerStatus``,
``stop_server(settings) -> bool`` (its environment: ``environment.labelstudio_env``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from annotator.config import Settings
from annotator.credentials import check_bind
from annotator.errors import LabelStudioError
from annotator.labelstudio.environment import labelstudio_env

log = logging.getLogger(__name__)

STATE_FILE = "annotator-server.json"
LOG_FILE = "labelstudio.log"
DB_FILE = "label_studio.sqlite3"
@dataclass
class ServerInfo:
    """A running Label Studio we started: where it listens, its process, its files."""

    pid: int
    url: str
    port: int
    data_path: str
    log_path: str
    started_at: float
    startup_s: float = 0.0
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "process"}


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    healthy: bool
    url: str
    pid: int | None
    message: str


INSTALL_SERVER = "pip install '.[server]'"


def require_server_package() -> None:
    """The Label Studio server is an extra of the package: without it, one line with the install command
    instead of a traceback (the client side, label-studio-sdk, is always installed)."""
    if importlib.util.find_spec("label_studio") is None:
        raise LabelStudioError(f"the Label Studio server is not installed: run {INSTALL_SERVER} "
                               "(or set ANNOTATOR_LABELSTUDIO_URL to a Label Studio that runs elsewhere)")


def labelstudio_version() -> str:
    from importlib.metadata import version

    return version("label-studio")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cxr-annotator"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    # Label Studio itself probes "localhost": a listener there also moves it
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our exited child not yet reaped) is not alive
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _is_labelstudio(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return _pid_alive(pid)  # no /proc (macOS): trust the state file
    return "label_studio" in cmdline or "label-studio" in cmdline


def _healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        resp = requests.get(f"{url}/health", timeout=timeout_s)
        return resp.status_code == 200 and resp.json().get("status") == "UP"
    except (requests.RequestException, ValueError):
        return False


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(settings: Settings, data_path: Path, port: int, log_path: Path, with_user: bool = True) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "label_studio.server", "start", "--no-browser",
        "--internal-host", settings.labelstudio_host, "--port", str(port), "--data-dir", str(data_path),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_fh:
        return subprocess.Popen(
            cmd,
            cwd=str(data_path),
            env=labelstudio_env(settings, data_path, port, with_user=with_user),
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the CLI does not stop the server
        )


def _wait_healthy(proc: subprocess.Popen, url: str, port: int, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabelStudioError(
                f"Label Studio exited with code {proc.returncode} during start-up; log {log_path}:\n{_log_tail(log_path)}"
            )
        if _healthy(url, timeout_s=1.0):
            moved = re.findall(r"Starting development server at http://[^:]+:(\d+)/", _log_tail(log_path, 40))
            if moved and int(moved[-1]) != port:
                _terminate(proc.pid, proc)
                raise LabelStudioError(f"Label Studio moved to port {moved[-1]} instead of {port}; free port {port}")
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    _terminate(proc.pid, proc)
    raise LabelStudioError(
        f"Label Studio did not answer {url}/health within {timeout_s:.0f} s (stopped it); log {log_path}:\n"
        f"{_log_tail(log_path)}"
    )


def _terminate(pid: int, proc: subprocess.Popen | None = None, timeout_s: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not _pid_alive(pid):
            return
        time.sleep(0.1)
    log.warning("Label Studio (pid %d) ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if proc is not None:
        proc.wait(timeout=5)


def _template_key() -> str:
    return f"labelstudio-{labelstudio_version()}-nouser"


def migrated_template(settings: Settings, timeout_s: float = 180.0) -> Path:
    """A migrated Label Studio data folder with no user in it, built once per Label Studio version."""
    root = cache_root()
    target = root / _template_key()
    if (target / DB_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ls-template-", dir=root))
    log.info("building a migrated Label Studio template in %s (one time, ~30 s)", work)
    port = free_port(settings.labelstudio_host)
    proc = _spawn(settings, work, port, work / LOG_FILE, with_user=False)
    try:
        _wait_healthy(proc, f"http://{settings.labelstudio_host}:{port}", port, work / LOG_FILE, timeout_s)
    finally:
        _terminate(proc.pid, proc)
    (work / LOG_FILE).unlink(missing_ok=True)
    (work / ".env").unlink(missing_ok=True)  # each copy gets its own secret key
    try:
        work.rename(target)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    return target


def _state_path(settings: Settings) -> Path:
    return settings.labelstudio_data / STATE_FILE


def _read_state(settings: Settings) -> dict | None:
    try:
        return json.loads(_state_path(settings).read_text())
    except (OSError, ValueError):
        return None


def server_status(settings: Settings) -> ServerStatus:
    """Is our Label Studio running (by its recorded pid) and healthy (by its /health)?"""
    state = _read_state(settings)
    url = settings.labelstudio_base_url
    if state is None:
        healthy = _healthy(url, timeout_s=1.0)
        msg = f"not started by us; {'something answers' if healthy else 'nothing answers'} at {url}"
        return ServerStatus(False, healthy, url, None, msg)
    pid, url = int(state["pid"]), state["url"]
    if not (_pid_alive(pid) and _is_labelstudio(pid)):
        return ServerStatus(False, False, url, pid, f"stale record: pid {pid} is gone; run `annotator labelstudio start`")
    healthy = _healthy(url)
    return ServerStatus(True, healthy, url, pid, "running" if healthy else "running but /health does not answer")


def start_server(settings: Settings, *, timeout_s: float = 180.0, use_template: bool = True) -> ServerInfo:
    """Start Label Studio for this workspace (or return the one already running) and wait for its health."""
    if settings.labelstudio_url:
        raise LabelStudioError(
            f"ANNOTATOR_LABELSTUDIO_URL points to an external Label Studio ({settings.labelstudio_url}); "
            "unset it to run the bundled one"
        )
    require_server_package()
    state = _read_state(settings)
    if state and _pid_alive(int(state["pid"])) and _is_labelstudio(int(state["pid"])):
        if _healthy(state["url"]):
            return ServerInfo(**{k: v for k, v in state.items() if k in ServerInfo.__dataclass_fields__})
        raise LabelStudioError(f"Label Studio (pid {state['pid']}) runs but is unhealthy; `annotator labelstudio stop` it")
    host, port = settings.labelstudio_host, settings.labelstudio_port
    check_bind(settings, host, "Label Studio")
    if not port_is_free(host, port):
        raise LabelStudioError(
            f"port {port} on {host} is in use by another program; stop it or choose another port "
            f"(ANNOTATOR_LABELSTUDIO_PORT)"
        )
    data_path = settings.labelstudio_data
    settings.image_store.mkdir(parents=True, exist_ok=True)
    if not (data_path / DB_FILE).is_file():
        data_path.parent.mkdir(parents=True, exist_ok=True)
        if use_template and not settings.labelstudio_db_url:  # the template is a migrated SQLite file
            template = migrated_template(settings, timeout_s=timeout_s)
            shutil.copytree(template, data_path, dirs_exist_ok=True)
    data_path.mkdir(parents=True, exist_ok=True)
    log_path = data_path / LOG_FILE
    url = f"http://{host}:{port}"
    t0 = time.monotonic()
    proc = _spawn(settings, data_path, port, log_path)
    _wait_healthy(proc, url, port, log_path, timeout_s)
    info = ServerInfo(proc.pid, url, port, str(data_path), str(log_path), time.time(), time.monotonic() - t0, proc)
    _state_path(settings).write_text(json.dumps(info.to_json(), indent=2))
    _check_token(settings, url, proc)
    return info


def _check_token(settings: Settings, url: str, proc: subprocess.Popen) -> None:
    try:
        resp = requests.get(
            f"{url}/api/projects", params={"page_size": 1},
            headers={"Authorization": f"Token {settings.labelstudio_token}"}, timeout=10,
        )
    except requests.RequestException as exc:
        raise LabelStudioError(f"Label Studio at {url} started but its API does not answer: {exc}") from exc
    if resp.status_code == 401:
        raise LabelStudioError(
            f"Label Studio at {url} refuses our token (401): its data folder {settings.labelstudio_data} was "
            "created with other credentials; set ANNOTATOR_LABELSTUDIO_TOKEN to the token it was created with, "
            "or move that folder away to start fresh"
        )


def stop_server(settings: Settings, *, process: subprocess.Popen | None = None, timeout_s: float = 15.0) -> bool:
    """Stop the Label Studio recorded for this workspace by its pid; True if one was stopped."""
    state = _read_state(settings)
    stopped = False
    if state is not None:
        pid = int(state["pid"])
        if _pid_alive(pid) and _is_labelstudio(pid):
            _terminate(pid, process if process is not None and process.pid == pid else None, timeout_s)
            stopped = True
        _state_path(settings).unlink(missing_ok=True)
    elif process is not None and process.poll() is None:
        _terminate(process.pid, process, timeout_s)
        stopped = True
    if process is not None and process.poll() is None:
        process.wait(timeout=timeout_s)
    return stopped
