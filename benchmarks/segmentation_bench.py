"""Segmentation speed and agreement, side by side in one run (prints figures; no asserts).

  python benchmarks/segmentation_bench.py [--checkpoint PATH] [--data PATH --layout manifest]
      [--dataset Montgomery --dataset Shenzhen] [--images 32] [--repeats 20] [--threads N] [--train-steps 5]

Without --checkpoint it times an untrained U-Net-ResNet18 at 256 px (speed does not depend on the weights;
agreement is then not meaningful). With one it also reports each fast path's mean mask Dice against fp32
and the checkpoint's Dice on the collection. Say in any report whether the machine was shared: this
prints the load average next to the figures.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pairs(data: Path, layout: str, datasets: list[str] | None, limit: int):
    from annotator.imaging.io import read_image, read_mask
    from annotator.ingest.importer import list_items
    from annotator.ingest.layouts import ImportItem

    out = []
    if limit <= 0:
        return out
    for item in list_items(data, layout):
        if not isinstance(item, ImportItem) or item.lung_mask_path is None:
            continue
        if datasets and (item.dataset or "") not in datasets:
            continue
        image = read_image(item.image_path)
        out.append((image, read_mask(item.lung_mask_path, image.shape)))
        if len(out) >= limit:
            break
    return out


def _time_model(predictor, size_px: int, repeats: int) -> float:
    batch = np.random.default_rng(0).standard_normal((1, size_px, size_px)).astype(np.float32)
    for _ in range(3):
        predictor.forward_batch(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.forward_batch(batch)
    return (time.perf_counter() - start) * 1000 / repeats


def _train_step_s(spec, bf16: bool, steps: int, batch: int = 4) -> float:
    import torch

    from annotator.segmentation.factory import build_model
    from annotator.segmentation.train import segmentation_loss

    model = build_model(spec).train()
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(batch, 1, spec.input_size_px, spec.input_size_px)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, spec.input_size_px, spec.input_size_px))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
        else:
            out = model(x)
        loss = segmentation_loss(out, y, "ce")
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--data", type=Path, help="a collection with lung masks (default: the sample set)")
    parser.add_argument("--layout", default="manifest")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.add_argument("--images", type=int, default=32, help="images for agreement and Dice")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch/ORT threads (0: adaptive, see runtime.py)")
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps (0: skip)")
    args = parser.parse_args()

    import torch

    from annotator.config import find_sample_data
    from annotator.evaluation.metrics import dice, segmentation_scores
    from annotator.segmentation.checkpoint import save_checkpoint
    from annotator.segmentation.factory import build_model
    from annotator.segmentation.predict import Predictor
    from annotator.segmentation.registry import get_spec
    from annotator.segmentation.runtime import configure_threads

    threads = configure_threads(args.threads)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machines read high); "
          f"torch threads {threads}")
    checkpoint = args.checkpoint
    if checkpoint is None:
        spec = get_spec("unet-resnet18", input_size_px=256)
        torch.manual_seed(0)
        checkpoint = Path(tempfile.mkdtemp(prefix="segbench-")) / "untrained.pt"
        atexit.register(shutil.rmtree, checkpoint.parent, True)  # ~100 MB with its ONNX export
        save_checkpoint(checkpoint, spec, build_model(spec).state_dict())
        print("no --checkpoint: an untrained U-Net-ResNet18 at 256 px (speed only)")
    data = args.data or find_sample_data()
    datasets = args.dataset or (["Montgomery", "Shenzhen"] if args.data is None else None)
    pairs = _pairs(data, args.layout, datasets, args.images) if data else []
    images = [img for img, _ in pairs]

    eager = Predictor.from_checkpoint(checkpoint)
    print(f"model {eager.model_version}: {eager.spec.display_name}, input {eager.spec.input_size_px} px; "
          f"{len(images)} real images from {data}")
    reference = eager.predict(images) if images else []
    print(f"{'backend':<8} {'ms/image (model only, batch 1)':>32} {'mask Dice vs fp32':>18} {'ms/image end to end':>20}")
    for backend in ("eager", "bf16", "onnx"):
        predictor = eager if backend == "eager" else Predictor.from_checkpoint(
            checkpoint, backend=backend, verify_images=images or None, min_dice=0.0, threads=threads)
        ms = _time_model(predictor, eager.spec.input_size_px, args.repeats)
        agreement, e2e = float("nan"), float("nan")
        if images:
            start = time.perf_counter()
            got = predictor.predict(images)
            e2e = (time.perf_counter() - start) * 1000 / len(images)
            agreement = float(np.mean([dice(a, b) for a, b in zip(got, reference)]))
        print(f"{backend:<8} {ms:>32.1f} {agreement:>18.4f} {e2e:>20.1f}")
    if pairs:
        scores = segmentation_scores(reference, [m for _, m in pairs])
        print(f"Dice of {eager.model_version} on {len(pairs)} images ({', '.join(datasets or ['all'])}): "
              f"DSC {scores['dsc']:.4f} ± {scores['dsc_ci']:.4f}, IoU {scores['iou']:.4f}, "
              f"accuracy {scores['accuracy']:.4f} (images the model may have seen unless you chose them)")
    if args.train_steps:
        spec = eager.spec
        fp32 = _train_step_s(spec, False, args.train_steps)
        bf16 = _train_step_s(spec, True, args.train_steps)
        print(f"training step, batch 4, {spec.input_size_px} px, {spec.name}: fp32 {fp32:.2f} s, "
              f"bf16 + channels_last {bf16:.2f} s")


if __name__ == "__main__":
    main()
