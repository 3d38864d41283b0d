"""Recognition figures on this machine: classifier training throughput and inference latency per
architecture, Score-CAM latency, quantification latency, and (with --pipeline) the full `predict` path.

    python benchmarks/recognition_bench.py [--archs squeezenet resnet18] [--size 128] [--pipeline PIPELINE_JSON]

Prints a table; state the machine (cores, shared or not) beside any figure you quote.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import torch

    from annotator.config import find_sample_data
    from annotator.imaging.io import read_image, read_mask
    from annotator.recognition.classifier import ClassifierConfig, build_network, count_parameters
    from annotator.recognition.preprocessing import prepare
    from annotator.recognition.quantification import quantify
    from annotator.recognition.scorecam import score_cam
    from annotator.recognition.classifier import target_layer
    from annotator.recognition.dataset import samples_from_manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["squeezenet", "resnet18"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--maps", type=int, default=64, help="Score-CAM maps")
    parser.add_argument("--pipeline", default=None, help="a pipeline.json / current.json to time `predict`")
    args = parser.parse_args()
    root = find_sample_data()
    if root is None:
        raise SystemExit("the sample set is not available (set ANNOTATOR_SAMPLE_DATA)")
    samples = [s for s in samples_from_manifest(root, classes=("covid",)) if s.lung_mask_path][:args.batch]
    images = [read_image(s.image_path) for s in samples]
    arrays = np.stack([prepare(i, "stack", args.size) for i in images])
    x = torch.from_numpy(arrays.transpose(0, 3, 1, 2).copy())
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, input {args.size} px, batch {args.batch}")
    print(f"{'arch':<14}{'params M':>10}{'train img/s':>13}{'infer ms/img':>14}{'score-cam ms':>14}")
    for arch in args.archs:
        size = max(args.size, ClassifierConfig(arch=arch, input_size_px=max(args.size, 75)).input_size_px)
        xb = x if size == args.size else torch.nn.functional.interpolate(x, size=(size, size))
        net = build_network(arch, 3)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        y = torch.randint(0, 3, (len(xb),))
        net.train()
        for step in range(args.steps + 1):
            if step == 1:
                start = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb), y).backward()
            opt.step()
        train_ips = args.steps * len(xb) / (time.perf_counter() - start)
        net.eval()
        with torch.inference_mode():
            net(xb[:1])
            start = time.perf_counter()
            for i in range(8):
                net(xb[i:i + 1])
            infer_ms = 1000 * (time.perf_counter() - start) / 8
        start = time.perf_counter()
        score_cam(net, xb[:1], target_layer(net, arch), max_maps=args.maps)
        cam_ms = 1000 * (time.perf_counter() - start)
        print(f"{arch:<14}{count_parameters(net) / 1e6:>10.2f}{train_ips:>13.1f}{infer_ms:>14.1f}{cam_ms:>14.0f}")
    lung = read_mask(samples[0].lung_mask_path, images[0].shape)
    prob = np.random.default_rng(0).random(images[0].shape).astype(np.float32)
    start = time.perf_counter()
    for _ in range(20):
        quantify(lung, prob)
    print(f"quantify (lungs split, shares, grade): {1000 * (time.perf_counter() - start) / 20:.2f} ms/image")
    if args.pipeline:
        from annotator.recognition.predict import RecognitionPredictor

        predictor = RecognitionPredictor.from_manifest(args.pipeline)
        predictor.analyse(images[0], saliency=False)
        for saliency in (False, True):
            start = time.perf_counter()
            for img in images[:5]:
                predictor.analyse(img, saliency=saliency)
            print(f"predict, full pipeline{' + Score-CAM' if saliency else ''}: "
                  f"{1000 * (time.perf_counter() - start) / 5:.0f} ms/image ({predictor.configuration})")
        predictor.close()


if __name__ == "__main__":
    main()
