"""The client without Label Studio: payloads, and faults against real sockets (down, slow, 5xx)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from annotator.config import load_settings
from annotator.errors import ConfigError, ImageReadError, LabelStudioError, MaskError
from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.tasks import TaskIn, task_key
from annotator.labelstudio.environment import labelstudio_env
from annotator.labelstudio.server import free_port


@pytest.fixture
def store_settings(tmp_path, real_pairs):
    settings = load_settings(workspace=tmp_path / "ws")
    settings.image_store.mkdir(parents=True)
    for path, _, _ in real_pairs:
        shutil.copy(path, settings.image_store / path.name)
    return settings


def test_task_payload_carries_our_keys_and_an_exact_prediction(store_settings, real_pairs):
    from annotator.imaging.rle import rle_to_mask

    path, pixels, mask = real_pairs[2]
    task = TaskIn(42, "ra_review", store_settings.image_store / path.name, round_id=3, prediction_mask=mask,
                  model_version="unet-resnet18-0123456789", score=0.75)
    payload = LabelStudio(store_settings).task_payload(task, pixels.shape)
    h, w = pixels.shape
    assert task.key == "ra_review:3:42" and task_key("md_verify", None, 7) == "md_verify:-:7"
    assert payload["data"] == {"image": f"/data/local-files/?d=images/{path.name}", "annotator_key": "ra_review:3:42",
                               "image_id": 42, "round_id": 3, "queue": "ra_review", "width": w, "height": h}
    (prediction,) = payload["predictions"]
    assert prediction["model_version"] == "unet-resnet18-0123456789" and prediction["score"] == 0.75
    (region,) = prediction["result"]
    assert (region["original_width"], region["original_height"]) == (w, h)
    assert np.array_equal(rle_to_mask(region["value"]["rle"], h, w), mask)


def test_prediction_of_another_size_is_refused(store_settings, real_pairs):
    path, pixels, _ = real_pairs[0]
    _, _, other = real_pairs[2]
    task = TaskIn(1, "ra_review", store_settings.image_store / path.name, prediction_mask=other, model_version="v")
    with pytest.raises(MaskError, match=rf"prediction is {other.shape[1]}x{other.shape[0]} but image .* is "
                                        rf"{pixels.shape[1]}x{pixels.shape[0]}"):
        LabelStudio(store_settings).task_payload(task, pixels.shape)


def test_image_outside_the_store_and_missing_fields_are_refused(store_settings, real_pairs):
    path, pixels, _ = real_pairs[0]
    ls = LabelStudio(store_settings)
    with pytest.raises(ImageReadError, match="not inside the workspace store"):
        ls.task_payload(TaskIn(1, "ra_review", path), pixels.shape)
    with pytest.raises(LabelStudioError, match=r"queue ra_adjust needs data fields \['advice'\]"):
        ls.task_payload(TaskIn(1, "ra_adjust", store_settings.image_store / path.name), pixels.shape)


def test_down_server_gives_a_clear_error_after_retries(tmp_path):
    port = free_port()  # nothing listens there
    settings = load_settings(workspace=tmp_path / "ws", labelstudio_port=port)
    ls = LabelStudio(settings, retries=2, backoff_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(LabelStudioError) as err:
        ls.list_projects()
    waited = time.monotonic() - t0
    assert str(err.value).startswith(f"Label Studio at http://127.0.0.1:{port} is down or too slow: GET /api/projects: "
                                     "cannot connect (ConnectionError) after 3 attempt(s)")
    assert "annotator labelstudio start" in str(err.value)
    assert waited >= 0.05 + 0.1  # the back-off really waited: 0.05 s then 0.1 s


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 twice, then a project list; or sleeps longer than the client waits on /slow."""

    calls = 0

    def do_GET(self):  # noqa: N802 - the stdlib's name
        type(self).calls += 1
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if type(self).calls <= 2 or self.path.startswith("/slow"):
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"results": [{"id": 1, "title": "t"}], "next": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server(http_server):
    _Flaky.calls = 0
    return http_server(_Flaky)


def test_503_is_retried_until_it_answers(tmp_path, flaky_server):
    settings = load_settings(workspace=tmp_path / "ws", labelstudio_port=flaky_server)
    projects = LabelStudio(settings, retries=3, backoff_s=0.01).list_projects()
    assert projects == [{"id": 1, "title": "t"}] and _Flaky.calls == 3


def test_slow_server_times_out_with_a_clear_error(tmp_path, flaky_server):
    settings = load_settings(workspace=tmp_path / "ws", labelstudio_port=flaky_server)
    ls = LabelStudio(settings, retries=1, backoff_s=0.01, timeout_s=0.3)
    with pytest.raises(LabelStudioError, match=r"down or too slow: GET /slow: no answer within 0.3 s \(ReadTimeout\) "
                                               r"after 2 attempt\(s\)"):
        ls.request("GET", "/slow")


def test_child_environment_drops_leaking_names_and_stays_offline(tmp_path):
    settings = load_settings(workspace=tmp_path / "ws", labelstudio_port=18099)
    base = {"HOST": "example.org", "PORT": "1", "USERNAME": "me", "PASSWORD": "pw", "LABEL_STUDIO_DEBUG": "1",
            "PATH": "/usr/bin"}
    env = labelstudio_env(settings, tmp_path / "data", 18099, base=base)
    assert not {"HOST", "PORT", "USERNAME", "PASSWORD", "LABEL_STUDIO_DEBUG"} & set(env)
    assert env["PATH"] == "/usr/bin"
    assert env["LABEL_STUDIO_HOST"] == "http://127.0.0.1:18099"
    assert env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == str(settings.store_path)
    assert env["LABEL_STUDIO_USER_TOKEN"] == settings.labelstudio_token
    for name in ("LABEL_STUDIO_COLLECT_ANALYTICS", "LABEL_STUDIO_LATEST_VERSION_CHECK"):
        assert env[name] == "false"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true" and env["SENTRY_DSN"] == ""


def test_child_environment_sets_its_postgresql_database_and_drops_the_callers(tmp_path):
    base = {"POSTGRE_PASSWORD": "theirs", "POSTGRE_HOST": "elsewhere", "DJANGO_DB": "sqlite", "PATH": "/usr/bin"}
    sqlite = load_settings(workspace=tmp_path / "ws")
    env = labelstudio_env(sqlite, tmp_path / "data", 18099, base=base)
    assert not {"POSTGRE_PASSWORD", "POSTGRE_HOST", "DJANGO_DB", "LABEL_STUDIO_DJANGO_DB"} & set(env)  # its SQLite
    ours = load_settings(workspace=tmp_path / "ws", labelstudio_db_url="postgresql://ls:s3cret@db.lab:6543/labels")
    env = labelstudio_env(ours, tmp_path / "data", 18099, base=base)
    assert {k: env[k] for k in env if "POSTGRE" in k or "DJANGO_DB" in k} == {
        "LABEL_STUDIO_DJANGO_DB": "default", "LABEL_STUDIO_POSTGRE_NAME": "labels", "LABEL_STUDIO_POSTGRE_USER": "ls",
        "LABEL_STUDIO_POSTGRE_PASSWORD": "s3cret", "LABEL_STUDIO_POSTGRE_HOST": "db.lab",
        "LABEL_STUDIO_POSTGRE_PORT": "6543"}
    assert "s3cret" not in repr(ours) and "postgresql://ls:***@db.lab:6543/labels" in repr(ours)
    with pytest.raises(ConfigError, match="labelstudio_db_url.*postgresql://user:password@host:port/database"):
        load_settings(workspace=tmp_path / "ws", labelstudio_db_url="mysql://x@y/z")


def test_child_environment_keeps_ssrf_protection_on_with_only_127_0_0_1_let_through(tmp_path):
    import ipaddress

    settings = load_settings(workspace=tmp_path / "ws", labelstudio_port=18099)
    base = {"SSRF_PROTECTION_ENABLED": "false", "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
            "ML_BLOCK_LOCAL_IP": "false", "USE_DEFAULT_BANNED_SUBNETS": "false"}
    env = labelstudio_env(settings, tmp_path / "data", 18099, base=base)
    assert (env["LABEL_STUDIO_SSRF_PROTECTION_ENABLED"], env["LABEL_STUDIO_ML_BLOCK_LOCAL_IP"]) == ("true", "true")
    assert env["LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS"] == "false"  # replaced by our list, below
    assert not {"SSRF_PROTECTION_ENABLED", "ML_BLOCK_LOCAL_IP", "USE_DEFAULT_BANNED_SUBNETS"} & set(env)
    banned = [ipaddress.ip_network(n) for n in env["LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS"].split(",")]
    is_banned = lambda ip: any(ipaddress.ip_address(ip) in n for n in banned)
    assert not is_banned("127.0.0.1")
    for ip in ("127.0.0.0", "127.0.0.2", "127.255.255.255", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254",
               "0.0.0.0", "::1", "::ffff:127.0.0.1", "fd00::1", "fe80::1"):
        assert is_banned(ip), ip
    assert not is_banned("93.184.216.34")  # a public address: Label Studio's own defaults allow those too


def test_adapter_and_backend_app_import_without_torch():
    code = ("import sys; import annotator.labelstudio.client, annotator.labelstudio.readback, "
            "annotator.labelstudio.server, ml_backend.app, ml_backend.holder, ml_backend.server, "
            "annotator.cli.labelstudio, annotator.cli.serve; "
            "print(sorted(m for m in ('torch', 'segmentation_models_pytorch', 'label_studio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_best_of_six_grid_places_each_candidate_in_its_tile(store_settings, real_pairs):
    from annotator.labelstudio.grid import GAP_PX, render_best_of_six, write_best_of_six

    _, pixels, mask = real_pairs[2]
    h, w = pixels.shape
    masks = [mask if i == 4 else np.zeros_like(mask) for i in range(6)]  # only m5 has a mask
    grid = render_best_of_six(pixels, masks)
    assert grid.shape == (2 * h + GAP_PX, 3 * w + 2 * GAP_PX, 3)
    tile = lambda i: grid[(i // 3) * (h + GAP_PX):(i // 3) * (h + GAP_PX) + h, (i % 3) * (w + GAP_PX):(i % 3) * (w + GAP_PX) + w]
    green = lambda t: int(((t[:, :, 1].astype(int) - t[:, :, 0]) > 40).sum())
    assert green(tile(4)) > 0.5 * int((mask > 0).sum())
    assert all(green(tile(i)) == 0 for i in (0, 1, 2, 3, 5))
    with pytest.raises(MaskError, match="best-of-six needs 6 masks, got 5"):
        render_best_of_six(pixels, masks[:5])
    path = write_best_of_six(store_settings, 42, 3, pixels, masks)
    assert path == store_settings.store_path / "overlays" / "best_of_six-r3-42.png" and path.stat().st_size > 1000
