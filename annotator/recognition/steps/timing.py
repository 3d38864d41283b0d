"""Step: inference time per image on the CPU (Table 11) and trainable parameters (Table 12) of every
network the run trained."""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from annotator.evaluation.tables import Table
from annotator.recognition.classifier import Classifier, count_parameters
from annotator.recognition.steps.classification import TrainedClassifiers
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.infection import InfectionNetworks
from annotator.segmentation.factory import count_parameters as seg_parameters


def measure_timing(ctx: RunContext, infection: InfectionNetworks, trained: TrainedClassifiers) -> None:
    lungs = infection.lungs
    test = [s for s in ctx.samples if ctx.is_test(s)][: ctx.config.timing_images]
    if not test:
        test = list(ctx.samples[: ctx.config.timing_images])
    images = [ctx.pixels(s) for s in test]
    threads = torch.get_num_threads()

    def time_it(fn) -> tuple[float, float]:
        fn(images[0])  # warm-up
        ms = []
        for img in images:
            start = time.perf_counter()
            fn(img)
            ms.append(1000 * (time.perf_counter() - start))
        return float(np.mean(ms)), float(np.std(ms))

    timing = Table("Inference time per image, CPU (Table 11)", ["model", "task", "n images", "mean ms", "sd ms"])
    params = Table("Trainable parameters (Table 12)", ["model", "task", "parameters (M)"])
    seg_models = [("lung", lungs.predictor)] + [(f"infection ({c})", p) for c, p in infection.predictors.items()]
    for task, pred in seg_models:
        mean, sd = time_it(lambda img, pred=pred: pred.predict_proba([img]))
        timing.add(pred.spec.name, task, len(images), f"{mean:.1f}", f"{sd:.1f}")
        params.add(pred.spec.name, task, f"{seg_parameters(pred.model) / 1e6:.2f}")
    seen_arch = set()
    for (scheme, key), path in trained.items():
        clf = Classifier.from_checkpoint(path, ctx.device)
        masks = {}
        if clf.config.input_mode == "segmented":
            lungs.predict(test)
            masks = {id(ctx.pixels(s)): lungs.masks[s.key] for s in test}
        mean, sd = time_it(lambda img, clf=clf, masks=masks: clf.predict_proba([img], [masks.get(id(img))]))
        timing.add(key, f"classifier {scheme}", len(images), f"{mean:.1f}", f"{sd:.1f}")
        if clf.config.arch not in seen_arch:
            seen_arch.add(clf.config.arch)
            params.add(clf.config.arch, f"classifier ({len(clf.class_names)} classes)", f"{count_parameters(clf.model) / 1e6:.2f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    timing.note = (f"Single-image calls after one warm-up, torch threads {threads}, eager fp32, load average "
                   f"{load:.1f} on {os.cpu_count()} cores when measured (a load above the core count slows them).")
    ctx.report.table("timing", timing)
    ctx.report.table("parameters", params)
