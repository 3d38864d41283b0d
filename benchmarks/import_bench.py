"""Import speed: images imported per second into a fresh temp workspace, cold (first import) and warm
(re-import of the same collection, which adds nothing), side by side.

    python benchmarks/import_bench.py                      # the sample set, manifest layout
    python benchmarks/import_bench.py PATH --layout folder  # any collection
    python benchmarks/import_bench.py --phases              # also split the import time into its phases
    python benchmarks/import_bench.py --db-url postgresql+psycopg://...  # another database (must be empty)

Prints figures only; nothing is asserted. The workspace lives in a temp dir and is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from annotator.config import find_sample_data, load_settings
from annotator import store
from annotator.ingest import importer
from annotator.workspace import init_workspace
from db.engine import session_scope


# the import's steps, timed by wrapping the functions where they are called from (only with --phases)
PHASES = {"load_image": "decode image", "_read_item_mask": "read masks", "file_sha256": "sha256",
          "measure_quality": "quality", "store_file": "copy image", "write_mask_file": "encode+write mask"}
PHASE_MODULES = {"write_mask_file": store}  # called inside the store; the rest from the importer


def _time_phases(timings: Counter) -> None:
    for name in PHASES:
        module = PHASE_MODULES.get(name, importer)
        func = getattr(module, name)

        def timed(*args, _func=func, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _func(*args, **kwargs)
            finally:
                timings[_name] += time.perf_counter() - t0

        setattr(module, name, timed)


def _run(settings, root: Path, layout: str, cls: str | None, timings: Counter) -> dict:
    timings.clear()
    t0 = time.perf_counter()
    items = importer.list_items(root, layout, cls)
    t1 = time.perf_counter()
    with session_scope(settings.database_url) as session:
        summary = importer.import_items(session, settings, items, layout, checkpoint=session.commit)
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    out = {"items": len(items), "added": summary.images_added, "known": summary.images_known,
           "masks": sum(summary.masks_added.values()), "failures": len(summary.failures),
           "list_s": t1 - t0, "import_s": t2 - t1, "commit_s": t3 - t2, "total_s": t3 - t0}
    for name in PHASES:
        out[name] = timings.get(name, 0.0)
    out["db"] = (t2 - t1) - sum(timings.values()) if timings else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, help="collection root (default: the sample set)")
    parser.add_argument("--layout", default="manifest")
    parser.add_argument("--class", dest="cls")
    parser.add_argument("--db-url", help="an empty database to import into (default: SQLite in the temp workspace)")
    parser.add_argument("--phases", action="store_true", help="also time decode-only and hash-only passes")
    args = parser.parse_args()
    root = args.path or find_sample_data()
    if root is None:
        raise SystemExit("no collection given and the sample set was not found (set ANNOTATOR_SAMPLE_DATA)")

    timings: Counter = Counter()
    if args.phases:
        _time_phases(timings)
    tmp = Path(tempfile.mkdtemp(prefix="import-bench-"))
    try:
        settings = load_settings(workspace=tmp / "ws", db_url=args.db_url)
        init_workspace(settings)
        cold = _run(settings, root, args.layout, args.cls, timings)
        warm = _run(settings, root, args.layout, args.cls, timings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    db = "SQLite" if args.db_url is None else args.db_url.split(":", 1)[0]
    print(f"collection: {root} (layout {args.layout}); database: {db}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} at the end "
          "(a shared machine: figures vary with the load)")
    print(f"{'':24}{'cold':>12}{'warm':>12}")
    rows = [("items", "items", "{:>12d}"), ("images added", "added", "{:>12d}"),
            ("images already stored", "known", "{:>12d}"), ("masks added", "masks", "{:>12d}"),
            ("failures", "failures", "{:>12d}"), ("list items (s)", "list_s", "{:>12.2f}"),
            ("import (s)", "import_s", "{:>12.2f}"), ("final commit (s)", "commit_s", "{:>12.2f}"),
            ("total (s)", "total_s", "{:>12.2f}")]
    for label, key, fmt in rows:
        print(f"{label:24}" + fmt.format(cold[key]) + fmt.format(warm[key]))
    rates = [r["items"] / r["total_s"] if r["total_s"] else float("nan") for r in (cold, warm)]
    print(f"{'images per second':24}{rates[0]:>12.1f}{rates[1]:>12.1f}")
    if args.phases:
        print("where the import time goes (s):")
        for name, label in [*PHASES.items(), ("db", "DB, bookkeeping (rest)")]:
            print(f"  {label:22}" + f"{cold[name]:>12.2f}{warm[name]:>12.2f}")

if __name__ == "__main__":
    main()
