"""Memory and time of the inputs an attacker would hand over: a large but valid image that compresses to a
few KB, a PNG whose header declares 30000x30000 (a decompression bomb) and a brush RLE whose header claims
512 Mi values. Each case runs in its own child process, so its peak resident memory is its own.

    python benchmarks/bad_input_bench.py

Prints figures only; nothing is asserted. Files live in a temp dir, removed at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

CHILD = r"""
import json, sys, time
from pathlib import Path
case, path = sys.argv[1], sys.argv[2]
import numpy as np
from annotator.errors import AnnotatorError
from annotator.imaging.io import load_image
from annotator.imaging.limits import ImageLimits
from annotator.imaging.quality import measure_quality
from annotator.imaging.rle import rle_to_mask
def rss_kb(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1])
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current resident size
before = rss_kb("VmRSS:")
t0 = time.perf_counter()
outcome = "ok"
try:
    if case == "rle":
        rle_to_mask(json.loads(Path(path).read_text()), 256, 256)
    else:
        loaded = load_image(Path(path), ImageLimits(50_000_000, 64))
        measure_quality(loaded.pixels)
        outcome = f"ok {loaded.pixels.shape[1]}x{loaded.pixels.shape[0]}"
except AnnotatorError as exc:
    outcome = "refused: " + str(exc).split(": ", 1)[-1][:70]
elapsed = time.perf_counter() - t0
peak = rss_kb("VmHWM:")
print(json.dumps({"outcome": outcome, "ms": elapsed * 1000, "extra_mb": (peak - before) / 1024}))
"""


def _claim_png_size(png: bytes, width: int, height: int) -> bytes:
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:29]
    return png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:]


def _cases(folder: Path) -> dict[str, Path]:
    gray = np.zeros((4000, 4000), np.uint8)
    gray[1000:3000, 800:3200] = 200  # a block: compresses to a few KB, decodes to 16 MB
    cases = {}
    for name, arr in (("4000x4000 8-bit gray PNG", gray), ("4000x4000 16-bit gray PNG", gray.astype(np.uint16) * 257),
                      ("4000x4000 8-bit RGB PNG", np.dstack([gray] * 3))):
        path = folder / f"{len(cases)}.png"
        cv2.imwrite(str(path), arr)
        cases[name] = path
    small = cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes()
    bomb = folder / "bomb.png"
    bomb.write_bytes(_claim_png_size(small, 30000, 30000))
    cases["PNG declaring 30000x30000"] = bomb
    rle = folder / "rle.json"
    rle.write_text(json.dumps(list((512 * 2**20).to_bytes(4, "big")) + [0] * 60))
    cases["brush RLE claiming 512 Mi values"] = rle
    return cases


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bad-input-bench-") as tmp:
        cases = _cases(Path(tmp))
        print(f"{'case':36} {'file KB':>8} {'ms':>8} {'extra MB':>9}  outcome")
        for name, path in cases.items():
            kind = "rle" if name.startswith("brush") else "image"
            done = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True,
                                  check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name:36} {path.stat().st_size / 1024:8.1f} {result['ms']:8.1f} {result['extra_mb']:9.1f}  "
                  f"{result['outcome']}")
    print("extra MB: the child's peak resident memory (VmHWM, reset after its imports) above its size then")


if __name__ == "__main__":
    main()
