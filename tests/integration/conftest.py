"""Real servers on free loopback ports in temp folders: Label Studio, our ML backend, Chromium.

Label Studio starts from a migrated template folder (built once under $XDG_CACHE_HOME/cxr-annotator, ~30 s;
later starts ~3 s). Every server is stopped through its own process handle.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests

from annotator.config import Settings, load_settings
from annotator.imaging.io import read_image, read_mask
from annotator.labelstudio.server import free_port


@dataclass(frozen=True)
class StoredImage:
    image_id: int
    path: Path  # inside the workspace store
    pixels: np.ndarray
    mask: np.ndarray  # the manual lung mask, used as the "prediction" where no network is needed


@pytest.fixture(scope="session")
def ls_settings(tmp_path_factory) -> Settings:
    ws = tmp_path_factory.mktemp("ls") / "ws"
    return load_settings(workspace=ws, labelstudio_port=free_port(), backend_port=free_port(),
                         predict_backend="eager")


@pytest.fixture(scope="session")
def stored_images(ls_settings, sample_data) -> list[StoredImage]:
    """Eight real images with manual lung masks (the last one not square), copied into the temp store."""
    with (sample_data / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["has_lung_mask"] == "1" and r["lung_mask_origin"].startswith("manual")]
    square = [r for r in rows if r["width"] == r["height"]][:7]
    odd = [r for r in rows if r["width"] != r["height"]][:1]
    ls_settings.image_store.mkdir(parents=True, exist_ok=True)
    out = []
    for i, row in enumerate(square + odd, start=1):
        dst = ls_settings.image_store / Path(row["file"]).name
        shutil.copy(sample_data / row["file"], dst)
        out.append(StoredImage(i, dst, read_image(dst), read_mask(sample_data / row["lung_mask_file"])))
    return out


@pytest.fixture(scope="session")
def ls_server(ls_settings):
    """A real Label Studio for the session (skips with the reason when it is not installed)."""
    pytest.importorskip("label_studio", reason="Label Studio tests need the label-studio package (pip install label-studio==1.23.2)")
    from annotator.labelstudio.server import start_server, stop_server

    info = start_server(ls_settings, timeout_s=300)
    try:
        yield info
    finally:
        stop_server(ls_settings, process=info.process)
        assert info.process.poll() is not None


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, sample_data) -> Path:
    """A tiny U-Net-ResNet18 (64 px) trained one short epoch on two real Montgomery images (the backend
    tests check the protocol, not the quality; the fast-path check is left to the segmentation tests)."""
    pytest.importorskip("torch", reason="the ML backend tests need torch (pip install -e '.[ml]')")
    import dataclasses

    from annotator.segmentation.registry import get_spec
    from annotator.segmentation.presets import PRESETS
    from annotator.segmentation.train import train_model

    with (sample_data / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "Montgomery" and r["has_lung_mask"] == "1"][:2]
    pairs = [(read_image(sample_data / r["file"]), read_mask(sample_data / r["lung_mask_file"])) for r in rows]
    out = tmp_path_factory.mktemp("tiny")
    config = dataclasses.replace(PRESETS["tiny"], max_epochs=1, verify_fast_paths=False)
    result = train_model(get_spec("unet-resnet18"), config, pairs, pairs, out, progress=False)
    return Path(result.checkpoint_path)


@pytest.fixture(scope="session")
def second_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """Another working network: the tiny one with its last layer nudged (a different model_version)."""
    import torch

    from annotator.segmentation.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    state = {k: v.clone() for k, v in ckpt.state_dict.items()}
    last = [k for k in state if k.startswith("segmentation_head") and k.endswith("bias")][0]
    state[last] += torch.tensor([0.05, -0.05])[: state[last].numel()]
    path = tmp_path_factory.mktemp("second") / "model.pt"
    save_checkpoint(path, ckpt.spec, state, preset=ckpt.preset, metrics=ckpt.metrics)
    return path


class BackendProcess:
    def __init__(self, settings: Settings, *extra: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = settings.workspace_path / f"backend-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "ml_backend.server", "--workspace", str(settings.workspace_path),
               "--port", str(self.port), *extra]
        child_env = {**os.environ, "ANNOTATOR_PREDICT_BACKEND": "eager", "ANNOTATOR_TORCH_THREADS": "2",
                     "ANNOTATOR_LABELSTUDIO_PORT": str(settings.labelstudio_port), **(env or {})}
        with self.log.open("wb") as fh:
            self.process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"backend did not answer: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def start_backend():
    """Start another backend process: ``start_backend(settings, *args)`` (the caller stops it)."""
    return BackendProcess


@pytest.fixture(scope="session")
def backend(ls_settings, tiny_checkpoint, stored_images):
    """Our ML backend serving the tiny checkpoint, as its own process."""
    proc = BackendProcess(ls_settings, "--checkpoint", str(tiny_checkpoint))
    try:
        yield proc
    finally:
        proc.stop()


# -- a small campaign driven through the CLI ----------------------------------------------------------
N_SEED = 36  # Montgomery/Shenzhen images with manual masks: Stage I's seed set
N_POOL = 24  # ieee8023 images with manual masks: the pool the simulated RAs judge


def make_subset(sample_data: Path, dest: Path, n_seed: int = N_SEED, n_pool: int = N_POOL) -> Path:
    """A small real collection in the sample set's manifest layout (files copied, no links)."""
    with (sample_data / "manifest.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames
        rows = list(reader)
    seed = [r for r in rows if r["dataset"] in ("Montgomery", "Shenzhen")][:n_seed]
    pool = [r for r in rows if r["lung_mask_origin"].startswith("manual (V7")][:n_pool]
    for row in seed + pool:
        for key in ("file", "lung_mask_file", "infection_mask_file"):
            if row[key]:
                (dest / row[key]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(sample_data / row[key], dest / row[key])
    with (dest / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(seed + pool)
    return dest


def run_cli(settings: Settings, *args: str, check: bool = True, env: dict | None = None, timeout_s: float = 900,
            log: Path | None = None) -> subprocess.CompletedProcess:
    """Run `annotator` in its own process, as a user would (``check``: fail the test on a non-zero exit); with
    ``log``, stdout and stderr both go to that file (as `> log 2>&1` would) and ``stdout`` is its text."""
    cmd = [sys.executable, "-m", "annotator.cli.main", "--workspace", str(settings.workspace_path), *args]
    child_env = {k: v for k, v in os.environ.items() if k != "ANNOTATOR_CRASH_AT"}  # crashes only when asked
    child_env.update({"ANNOTATOR_LABELSTUDIO_PORT": str(settings.labelstudio_port),
                      "ANNOTATOR_BACKEND_PORT": str(settings.backend_port), "ANNOTATOR_PREDICT_BACKEND": "eager",
                      "COLUMNS": "200", **(env or {})})
    if log is not None:
        with log.open("w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env, timeout=timeout_s)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{log.read_text()}")
        return subprocess.CompletedProcess(cmd, proc.returncode, log.read_text(), "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def campaign_tools():
    """``(make_subset, run_cli)`` for the modules that drive a campaign through the CLI."""
    return make_subset, run_cli


class _DropFirstPost(BaseHTTPRequestHandler):
    """A proxy to Label Studio that forwards every request but answers 502 to the first POST whose path holds
    ``drop`` after Label Studio did it, as a proxy timing out would."""

    target = ""
    drop = ""
    dropped = 0

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        resp = requests.request(self.command, self.target + self.path, data=body, headers=headers, timeout=60)
        if self.command == "POST" and type(self).drop in self.path and type(self).dropped == 0:
            type(self).dropped += 1
            self.send_response(502)
            self.end_headers()
            return
        self.send_response(resp.status_code)
        self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):
        pass


@pytest.fixture
def dropping_proxy(ls_server):
    """``dropping_proxy(path_part) -> (url, handler)``: a proxy to the session's Label Studio that loses the
    answer of the first POST to a path holding ``path_part`` (``handler.dropped`` counts it); stopped after."""
    servers = []

    def start(path_part: str):
        _DropFirstPost.target, _DropFirstPost.drop, _DropFirstPost.dropped = ls_server.url, path_part, 0
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), _DropFirstPost)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        servers.append(proxy)
        return f"http://127.0.0.1:{proxy.server_address[1]}", _DropFirstPost

    yield start
    for proxy in servers:
        proxy.shutdown()
        proxy.server_close()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, headless (skips, saying why, without them)."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip)")
    if not CHROMIUM.is_file():
        pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM}: run scripts/install_system.sh")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
