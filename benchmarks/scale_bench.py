"""Scale: how import, a round (selection, pre-labelling, push), its sync and `status` grow with the pool,
and what Stage III costs on this machine for the thesis' campaign (30,900 images x six networks).

    python benchmarks/scale_bench.py                 # pools of 1,000 and 5,000 images
    python benchmarks/scale_bench.py --with-30k      # and 30,000 (about 1.5 GB of PNG, an hour or more)
    python benchmarks/scale_bench.py --sizes 200 --round-size 50   # a quick look

The pools are augmented copies of the sample set (flip, rotation, gamma, noise: every copy a new file),
made at run time in a temp folder and removed at the end; nothing is committed. Each size runs in its own
process (its own peak memory) on a fresh SQLite workspace: `data import` of the folder, then what `round
next --size N` does in our code (the candidate query, the stratified choice, prediction by the working
network, post-processing, mask files and rows, QC, tasks) with an untrained U-Net-ResNet18 at the quick
preset's 128 px (the same arithmetic as a trained one), eager fp32 on the CPU; then the RLE of the round's
masks and their push to a real Label Studio (the workspace's own, started per size); scripted RAs annotate
every task through its API (half accepted, half redrawn: not timed, that is people's time), and `round
sync` reads the annotations back (decisions, state moves, the redrawn masks); then `status`.
``--no-labelstudio`` leaves Label Studio out (the RLE of the masks is still timed). PostgreSQL is measured
with --db-url (an empty database, one size per run); its query plans are also checked by
tests/db/test_query_plans.py on a throw-away server. Every SELECT of the round, sync and status paths is
run through the database's EXPLAIN; a full table scan is printed. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGE3_IMAGES = 30_900
STAGE3_NETWORKS = ("unet-resnet18", "unetplusplus-resnet18", "fpn-resnet18",
                   "unet-densenet121", "unetplusplus-densenet121", "fpn-densenet121")


def make_pool(sample: Path, out: Path, count: int, seed: int = 0) -> float:
    """``count`` augmented copies of the sample set's images in ``out``; returns seconds taken."""
    from annotator.imaging.io import read_image

    start = time.perf_counter()
    sources = sorted((sample / "images").rglob("*.*"))
    sources = [p for p in sources if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    have = len(list(out.glob("*.png")))
    for k in range(have, count):
        gray = read_image(sources[k % len(sources)])
        h, w = gray.shape
        if rng.random() < 0.5:
            gray = gray[:, ::-1]
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-8, 8)), float(rng.uniform(0.95, 1.05)))
        gray = cv2.warpAffine(np.ascontiguousarray(gray), turn, (w, h), borderMode=cv2.BORDER_REFLECT)
        gamma = float(rng.uniform(0.8, 1.25))
        noisy = 255.0 * (gray / 255.0) ** gamma + rng.normal(0, 2.0, gray.shape)
        cv2.imwrite(str(out / f"syn_{k:06d}.png"), np.clip(noisy, 0, 255).astype(np.uint8))
    return time.perf_counter() - start


def working_network(settings, session):
    """An untrained U-Net-ResNet18 at 128 px, registered as the working network, and its Predictor."""
    import torch

    from annotator.segmentation.checkpoint import save_checkpoint
    from annotator.segmentation.factory import build_model
    from annotator.segmentation.predict import Predictor
    from annotator.segmentation.registry import get_spec
    from annotator.model_registry import mark_working, register

    torch.manual_seed(0)
    spec = get_spec("unet-resnet18", input_size_px=128)
    path = settings.models_path / "bench.pt"
    ckpt = save_checkpoint(path, spec, build_model(spec).state_dict(), preset="quick")
    row = register(session, model_version=ckpt.model_version, spec=spec.name, preset="quick",
                         checkpoint_path=str(path.relative_to(settings.workspace_path)), metrics={}, snapshot={},
                         stage="stage1")
    mark_working(session, row)
    return Predictor.from_checkpoint(path, backend="eager", device="cpu", batch_size=16)


def _bench_people():
    """Scripted RAs for images without reference masks: every other task accepted as predicted, the others
    rejected with a redrawn mask (the prediction moved 3 px), so `round sync` writes masks too."""
    from workflows.simulator import ScriptedPeople, SimulationPolicy, Verdict

    class HalfRedrawn(ScriptedPeople):
        seen = 0

        def review(self, pred_mask, true_mask):
            self.seen += 1
            if self.seen % 2:
                return Verdict("accept", None, 1.0, 6.0)
            return Verdict("reject", np.roll(pred_mask, 3, axis=1), 0.9, 30.0)

    return HalfRedrawn(SimulationPolicy())


def _labelstudio_round(settings, statements: list) -> dict:
    """Push the round's tasks to the workspace's own Label Studio, let scripted RAs annotate them, sync them
    back; the push and the sync are timed (the Label Studio start and the annotating are not), and their
    SQL added to ``statements``."""
    from db.explain import captured_statements
    from annotator.labelstudio.client import LabelStudio
    from annotator.labelstudio.queue import Queue
    from annotator.labelstudio.server import start_server, stop_server
    from db.engine import session_scope
    from workflows.campaign import act
    from workflows.queues import push_queue, sync_queues

    info = start_server(settings, timeout_s=600)
    try:
        ls = LabelStudio(settings)
        with captured_statements() as seen:
            t0 = time.perf_counter()
            pushed = push_queue(settings, ls, Queue.RA_REVIEW, progress=False)
            out = {"push_s": time.perf_counter() - t0, "pushed": pushed["pushed"]}
        with session_scope(settings.database_url) as session:
            acted = act(session, settings, ls, Queue.RA_REVIEW, _bench_people())
        out["annotated"] = sum(acted.acted.values())
        with captured_statements() as more:
            t0 = time.perf_counter()
            out["synced"] = sync_queues(settings, ls, (Queue.RA_REVIEW, Queue.RA_ADJUST), progress=False)
            out["synced"] = sum(out["synced"]["recorded"].values())
            out["sync_s"] = time.perf_counter() - t0
        statements += seen + more
        return out
    finally:
        stop_server(settings, process=info.process)


def one_size(pool: Path, size: int, round_size: int, db_url: str | None, labelstudio: bool = True) -> dict:
    """Import ``size`` images of ``pool`` into a fresh workspace, start a round (pushed to Label Studio,
    annotated and synced back), read the status."""
    from annotator.config import load_settings
    from annotator.imaging.rle import mask_to_rle
    from annotator.imaging.io import read_mask
    from annotator.ingest.importer import import_items
    from annotator.ingest.layouts import read_folder
    from annotator.labelstudio.server import free_port
    from annotator.segmentation.runtime import configure_threads
    from annotator.status import collect_status
    from annotator.workspace import init_workspace
    from db.engine import session_scope
    from db.explain import captured_statements, full_scans
    from db.models import Mask, Task
    from sqlalchemy import select
    from workflows.sampling import Candidate, choose
    from workflows.stage2 import candidate_rows, start_round

    configure_threads(0)
    work = Path(tempfile.mkdtemp(prefix=f"scale-{size}-"))
    try:
        link = work / "pool"
        link.mkdir()
        for f in sorted(pool.glob("*.png"))[:size]:
            os.link(f, link / f.name)  # a hard link: the importer refuses symbolic ones
        ports = {"labelstudio_port": free_port(), "backend_port": free_port()}
        init_workspace(load_settings(workspace=work / "ws", db_url=db_url, **ports))
        settings = load_settings(workspace=work / "ws", db_url=db_url, **ports)  # read back: its own secrets
        out: dict = {"size": size}
        t0 = time.perf_counter()
        with session_scope(settings.database_url) as session:
            summary = import_items(session, settings, read_folder(link), "folder", checkpoint=session.commit)
        out["import_s"] = time.perf_counter() - t0
        out["imported"] = summary.images_added
        with session_scope(settings.database_url) as session:
            predictor = working_network(settings, session)
        statements: list = []
        with session_scope(settings.database_url) as session, captured_statements() as seen:
            t0 = time.perf_counter()
            pool_rows = candidate_rows(session)
            cands = [Candidate(i.id, i.cls, i.dataset, i.resolution_bin, i.contrast, i.snr) for i in pool_rows]
            choose("stratified", cands, round_size, 0)
            out["select_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = start_round(session, settings, predictor, size=round_size, target=10 ** 9, progress=False)
            out["round_next_s"] = time.perf_counter() - t0
            out["round_images"] = report.size
        statements += seen
        with session_scope(settings.database_url) as session:
            paths = session.scalars(select(Mask.store_path).join(Task, Task.image_id == Mask.image_id)
                                    .where(Task.round_id == report.round_id, Mask.origin == "model")).all()
        t0 = time.perf_counter()
        for p in paths:
            mask_to_rle(read_mask(settings.workspace_path / p))
        out["rle_s"] = time.perf_counter() - t0
        if labelstudio:
            out |= _labelstudio_round(settings, statements)
        with session_scope(settings.database_url) as session:
            with captured_statements() as seen:
                t0 = time.perf_counter()
                collect_status(session)
                out["status_s"] = time.perf_counter() - t0
            statements += seen
            out["scans"] = full_scans(session.connection(), statements)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stage3_ms_per_image(sample: Path, size_px: int, images: int = 32) -> dict[str, float]:
    """ms per image (read, resize, forward at batch 16, post-process) of each of the six, eager fp32 CPU."""
    import torch

    from annotator.imaging.io import read_image
    from annotator.segmentation.factory import build_model
    from annotator.segmentation.predict import Predictor
    from annotator.segmentation.registry import get_spec

    files = sorted(p for p in (sample / "images").rglob("*.*") if p.suffix.lower() in (".png", ".jpg"))[:images]
    grays = [read_image(f) for f in files]
    out = {}
    for name in STAGE3_NETWORKS:
        torch.manual_seed(0)
        spec = get_spec(name, input_size_px=size_px)
        predictor = Predictor(build_model(spec), spec, name, "eager", "cpu", batch_size=16)
        predictor.predict(grays[:2])  # warm-up
        t0 = time.perf_counter()
        predictor.predict(grays)
        out[name] = (time.perf_counter() - t0) * 1000 / len(grays)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--with-30k", action="store_true", help="add a pool of 30,000 images")
    parser.add_argument("--round-size", type=int, default=500)
    parser.add_argument("--no-labelstudio", action="store_true", help="no Label Studio push, annotation and sync")
    parser.add_argument("--no-stage3", action="store_true", help="no Stage III ms/image (the same on any database)")
    parser.add_argument("--db-url", default=None, help="another database, empty (PostgreSQL): give one --sizes value per run")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.pool, args.one, args.round_size, args.db_url, not args.no_labelstudio)))
        return
    from annotator.config import find_sample_data
    from annotator.segmentation.runtime import configure_threads

    sample = find_sample_data()
    if sample is None:
        sys.exit("no sample set: set ANNOTATOR_SAMPLE_DATA")
    sizes = sorted(set(args.sizes + ([30_000] if args.with_30k else [])))
    threads = configure_threads(int(os.environ.get("ANNOTATOR_TORCH_THREADS", "0")))
    print(f"CPU: {os.cpu_count()} cores, torch threads {threads}, load {os.getloadavg()[0]:.1f}; "
          f"database: {args.db_url or 'SQLite (fresh file per size)'}; round size {args.round_size}")
    tmp = Path(tempfile.mkdtemp(prefix="scale-pool-"))
    try:
        made = make_pool(sample, tmp / "pool", max(sizes))
        print(f"synthetic pool: {max(sizes)} images made in {made:.0f} s ({tmp})")
        print(f"{'images':>7} {'import s':>9} {'ms/img':>7} {'select s':>9} {'predict+store s':>16} {'RLE s':>6} "
              f"{'push s':>7} {'round next s':>13} {'sync s':>7} {'synced':>7} {'status ms':>10} {'peak MB':>8}")
        rows = []
        for size in sizes:
            cmd = [sys.executable, __file__, "--one", str(size), "--pool", str(tmp / "pool"),
                   "--round-size", str(args.round_size)] + (["--db-url", args.db_url] if args.db_url else []) \
                + (["--no-labelstudio"] if args.no_labelstudio else [])
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode != 0:
                print(f"{size}: failed\n{done.stderr[-3000:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            r["round_next_total_s"] = r["round_next_s"] + r.get("push_s", 0.0)
            rows.append(r)
            print(f"{size:>7} {r['import_s']:>9.1f} {1000 * r['import_s'] / size:>7.1f} {r['select_s']:>9.3f} "
                  f"{r['round_next_s']:>16.1f} {r['rle_s']:>6.2f} {r.get('push_s', float('nan')):>7.1f} "
                  f"{r['round_next_total_s']:>13.1f} {r.get('sync_s', float('nan')):>7.1f} {r.get('synced', 0):>7} "
                  f"{1000 * r['status_s']:>10.1f} {r['peak_rss_mb']:>8.0f}")
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            k = b["size"] / a["size"]
            print(f"growth from {a['size']} to {b['size']} images (x{k:g}; linear = x{k:g}, constant = x1): "
                  + ", ".join(f"{name} x{b[key] / max(a[key], 1e-9):.2f}" for name, key in
                              (("import", "import_s"), ("select", "select_s"), ("round next", "round_next_total_s"),
                               ("sync", "sync_s"), ("status", "status_s")) if key in a and key in b))
        scans = {s for r in rows for s in map(tuple, r["scans"])}
        dialect = "PostgreSQL EXPLAIN" if (args.db_url or "").startswith("postgresql") else "SQLite EXPLAIN QUERY PLAN"
        print(f"full table scans on the round, sync and status paths ({dialect}):" if scans else
              f"every SELECT on the round, sync and status paths uses an index ({dialect})")
        for sql, plan in sorted(scans):
            print(f"  {plan}: {sql[:140]}")
        for size_px in () if args.no_stage3 else (128, 256):
            ms = stage3_ms_per_image(sample, size_px)
            total = sum(ms.values())
            hours = STAGE3_IMAGES * total / 3.6e6
            print(f"Stage III at {size_px} px, eager fp32 CPU ({threads} threads): "
                  + ", ".join(f"{n} {v:.0f}" for n, v in ms.items())
                  + f" ms/image; six networks {total:.0f} ms/image -> {hours:.1f} machine-hours for "
                  f"{STAGE3_IMAGES:,} images")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
