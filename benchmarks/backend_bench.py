"""ML backend and import figures: /predict p50/p95 for 1 and 10 tasks beside the model-only time, and the
time to import 500 tasks with predictions into a real Label Studio.

    python benchmarks/backend_bench.py [--checkpoint model.pt] [--backend eager|bf16|onnx] [--repeat 30]
                                       [--input-size 128] [--skip-import] [--tasks 500]

Without --checkpoint, an untrained U-Net-ResNet18 at --input-size px is saved and served (the weights do
not change the time; the quick preset trains at 128 px). A fast backend (bf16/onnx) is checked against
fp32 on four real images first, as the Predictor requires. The backend is served over real HTTP on a
loopback port (waitress, as `annotator serve backend` serves it, in this process); the images are real
256 px sample CXRs.
Say in any quote that the machine was shared, and its load (printed below).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summary(name: str, values_ms: list[float]) -> str:
    return (f"{name:<34} p50 {percentile(values_ms, 50):8.1f} ms   p95 {percentile(values_ms, 95):8.1f} ms   "
            f"mean {statistics.fmean(values_ms):8.1f} ms   n={len(values_ms)}")


def sample_images(sample: Path, n: int) -> list[dict]:
    with (sample / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["has_lung_mask"] == "1" and r["width"] == r["height"] == "256"]
    return rows[:n]


def untrained_checkpoint(path: Path, input_size: int) -> Path:
    from annotator.segmentation.checkpoint import save_checkpoint
    from annotator.segmentation.factory import build_model
    from annotator.segmentation.registry import get_spec

    spec = get_spec("unet-resnet18", input_size)
    save_checkpoint(path, spec, build_model(spec).state_dict(), preset="bench-untrained")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--backend", default="eager", choices=["eager", "bf16", "onnx"])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--skip-import", action="store_true")
    args = parser.parse_args()

    import requests
    import torch

    from annotator.config import find_sample_data, load_settings
    from annotator.imaging.io import read_image, read_mask
    from annotator.labelstudio.server import free_port
    from annotator.segmentation.postprocess import postprocess
    from annotator.segmentation.predict import Predictor
    from ml_backend.app import BackendApp, EventLog
    from ml_backend.resolver import ImageResolver
    from ml_backend.holder import FixedCheckpoint, PredictorHolder
    from ml_backend.server import make_backend_server

    torch.set_num_threads(args.threads)
    sample = find_sample_data()
    if sample is None:
        sys.exit("no sample data: set ANNOTATOR_SAMPLE_DATA")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared with other work), "
          f"torch threads {args.threads}")
    tmp = Path(tempfile.mkdtemp(prefix="backend-bench-"))
    try:
        settings = load_settings(workspace=tmp / "ws", labelstudio_port=free_port(), backend_port=free_port())
        settings.image_store.mkdir(parents=True)
        rows = sample_images(sample, 10)
        paths, masks = [], []
        for row in rows:
            dst = settings.image_store / Path(row["file"]).name
            shutil.copy(sample / row["file"], dst)
            paths.append(dst)
            masks.append(read_mask(sample / row["lung_mask_file"]))
        images = [read_image(p) for p in paths]
        checkpoint = args.checkpoint or untrained_checkpoint(tmp / "model.pt", args.input_size)

        def loader(path: Path):
            return Predictor.from_checkpoint(path, backend=args.backend, verify_images=images[:4],
                                             on_refuse="eager", threads=args.threads)

        holder = PredictorHolder(FixedCheckpoint(checkpoint), loader)
        predictor = holder.get()
        print(f"network: {predictor.spec.name} at {predictor.spec.input_size_px} px, backend {predictor.backend}, "
              f"{predictor.model_version}")

        app = BackendApp(holder=holder, token=settings.backend_token,
                         images=ImageResolver(settings.store_path), events=EventLog(None))
        httpd = make_backend_server(app, "127.0.0.1", settings.backend_port)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{settings.backend_port}/predict"
        http = requests.Session()
        http.headers["Authorization"] = f"Token {settings.backend_token}"
        tasks = [{"id": i, "data": {"image": f"/data/local-files/?d=images/{p.name}"}} for i, p in enumerate(paths)]
        for _ in range(3):
            predictor.predict_proba(images[:1])
            http.post(url, json={"tasks": tasks[:1]}, timeout=60).raise_for_status()

        # interleaved, so that both see the same load of the (shared) machine; model only = what /predict
        # does minus HTTP, JSON, image decoding and RLE. It runs in a worker thread like the server's
        # request threads: here torch in the main thread was up to 25x slower under a loaded CPU.
        from concurrent.futures import ThreadPoolExecutor

        worker = ThreadPoolExecutor(1)

        def model_only(batch):
            t0 = time.perf_counter()
            [postprocess(p) for p in predictor.predict_proba(batch)]
            return (time.perf_counter() - t0) * 1e3

        model_one, model_ten, http_one, http_ten = [], [], [], []
        for i in range(args.repeat):
            model_one.append(worker.submit(model_only, [images[i % 10]]).result())
            t0 = time.perf_counter()
            resp = http.post(url, json={"tasks": [tasks[i % 10]]}, timeout=60)
            http_one.append((time.perf_counter() - t0) * 1e3)
            assert resp.status_code == 200 and len(resp.json()["results"]) == 1
        for _ in range(max(3, args.repeat // 3)):
            model_ten.append(worker.submit(model_only, images).result())
            t0 = time.perf_counter()
            resp = http.post(url, json={"tasks": tasks}, timeout=120)
            http_ten.append((time.perf_counter() - t0) * 1e3)
            assert resp.status_code == 200 and len(resp.json()["results"]) == 10
        httpd.shutdown()
        httpd.server_close()
        print(summary("model only, 1 image (256 px)", model_one))
        print(summary("/predict, 1 task (256 px)", http_one))
        print(summary("model only, 10 images", model_ten))
        print(summary("/predict, 10 tasks", http_ten))

        if not args.skip_import:
            bench_import(settings, paths, masks, args.tasks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_import(settings, paths: list[Path], masks: list[np.ndarray], n_tasks: int) -> None:
    from annotator.labelstudio.client import LabelStudio
    from annotator.labelstudio.queue import Queue
    from annotator.labelstudio.tasks import TaskIn
    from annotator.labelstudio.server import start_server, stop_server

    t0 = time.perf_counter()
    info = start_server(settings)
    print(f"Label Studio started in {time.perf_counter() - t0:.1f} s (from the migrated template)")
    try:
        ls = LabelStudio(settings)
        project_id = ls.ensure_project(Queue.RA_REVIEW, round_key="bench")
        tasks = [TaskIn(i + 1, Queue.RA_REVIEW, paths[i % len(paths)], round_id=1,
                        prediction_mask=masks[i % len(masks)], model_version="unet-resnet18-bench", score=0.9)
                 for i in range(n_tasks)]
        t0 = time.perf_counter()
        result = ls.import_tasks(project_id, tasks)
        took = time.perf_counter() - t0
        assert result.created == n_tasks and not result.failed, result.failed
        t0 = time.perf_counter()
        again = ls.import_tasks(project_id, tasks)
        took_again = time.perf_counter() - t0
        assert again.created == 0
        print(f"import {n_tasks} tasks with predictions (chunks of 100): {took:.1f} s "
              f"({took / n_tasks * 1e3:.1f} ms/task); re-import (nothing new): {took_again:.1f} s")
    finally:
        stop_server(settings, process=info.process)


if __name__ == "__main__":
    main()
