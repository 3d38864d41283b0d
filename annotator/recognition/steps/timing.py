"""Step: parameters and inference time per image of every segmentation network (Table 11) and classifier
(Table 12), and the whole system's time per image with the segmentation networks run in parallel (lungs and
infection at once: the parallel configuration) and one after the other (lungs, then the cascaded infection
network), each followed by the deployed 3-class classifier. The device is named in every note."""

from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from annotator.device import resolve_device
from annotator.evaluation.tables import Table
from annotator.recognition.classifier import Classifier, count_parameters
from annotator.recognition.infection import infection_inputs
from annotator.recognition.quantification import infected_mask
from annotator.recognition.steps.classification import Classifiers
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.infection import InfectionNetworks
from annotator.segmentation.factory import count_parameters as seg_parameters
from annotator.segmentation.predict import Predictor


def device_name(device: str) -> str:
    """The device in words: the GPU's name, or the CPU's model with its core and thread counts."""
    device = resolve_device(device)
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} ({device})"
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def _time(fn, images) -> tuple[float, float]:
    fn(images[0])  # warm-up
    ms = []
    for img in images:
        start = time.perf_counter()
        fn(img)
        ms.append(1000 * (time.perf_counter() - start))
    return float(np.mean(ms)), float(np.std(ms))


def measure_timing(ctx: RunContext, infection: InfectionNetworks, classifiers: Classifiers) -> None:
    lungs = infection.lungs
    test = [s for s in ctx.samples if ctx.is_test(s)][: ctx.config.timing_images] or list(ctx.samples[: ctx.config.timing_images])
    images = [ctx.pixels(s) for s in test]
    device = device_name(ctx.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = (f"n = {len(images)} single-image calls after one warm-up, eager fp32, on {device}; load average {load:.1f} "
            "when measured (a load above the core count slows every figure).")
    t11 = Table("Segmentation networks: parameters and inference time per image (Table 11)",
                ["network", "task", "parameters (M)", "n", "mean ms", "sd ms"])
    seg = [(name, "lung", Predictor.from_checkpoint(path, backend="eager", device=ctx.device))
           for name, path in lungs.checkpoints.items()]
    seg += [(name, f"infection ({conf})", p) for (name, conf), p in infection.predictors.items()]
    for name, task, pred in seg:
        mean, sd = _time(lambda img, pred=pred: pred.predict_proba([img]), images)
        t11.add(name, task, f"{seg_parameters(pred.model) / 1e6:.2f}", len(images), f"{mean:.1f}", f"{sd:.1f}")
        ctx.report.results.setdefault("timing", {})[f"{task} {name}"] = {"mean_ms": mean, "sd_ms": sd, "n": len(images)}
    t11.note = note
    ctx.report.table("segmentation_networks", t11)
    t12 = Table("Classification networks: parameters and inference time per image (Table 12)",
                ["network", "input px", "classes", "parameters (M)", "n", "mean ms", "sd ms"])
    seen = set()
    lungs.predict(test)
    masks = {id(ctx.pixels(s)): lungs.masks[s.key] for s in test}
    for ev in classifiers.evaluations:
        if ev.config.arch in seen:
            continue
        seen.add(ev.config.arch)
        clf = Classifier.from_checkpoint(ev.checkpoints[0], ctx.device)
        mean, sd = _time(lambda img, clf=clf: clf.predict_proba([img], [masks.get(id(img))]), images)
        t12.add(ev.config.arch, clf.config.input_size_px, len(clf.class_names),
                f"{count_parameters(clf.model) / 1e6:.2f}", len(images), f"{mean:.1f}", f"{sd:.1f}")
    t12.note = note
    ctx.report.table("classification_networks", t12)
    _system_time(ctx, infection, classifiers, images, note)


def _system_time(ctx: RunContext, infection: InfectionNetworks, classifiers: Classifiers, images, note: str) -> None:
    """Lungs + infection + the deployed 3-class classifier per image, parallel vs sequential."""
    lung = infection.lungs.predictor
    first = ctx.config.infection_networks[0]
    parallel_net, cascaded_net = infection.predictors[(first, "parallel")], infection.predictors[(first, "cascaded")]
    path = classifiers.deployed.get("covid-pneumonia-normal") or next(iter(classifiers.deployed.values()), None)
    clf = Classifier.from_checkpoint(path, ctx.device) if path is not None else None
    pool = ThreadPoolExecutor(max_workers=2)

    def classify(img, lung_mask):
        if clf is not None:
            clf.predict_proba([img], [lung_mask])

    def parallel(img):
        lung_job = pool.submit(lambda: lung.predict([img])[0])
        proba = parallel_net.predict_proba([img])[0]
        lung_mask = lung_job.result()
        infected_mask(lung_mask, proba)
        classify(img, lung_mask)

    def sequential(img):
        lung_mask = lung.predict([img])[0]
        proba = cascaded_net.predict_proba(infection_inputs([img], [lung_mask], "cascaded"))[0]
        infected_mask(lung_mask, proba)
        classify(img, lung_mask)

    table = Table("Whole system: time per image, segmentation networks in parallel vs one after the other",
                  ["segmentation", "networks", "n", "mean ms", "sd ms", "device"])
    device = device_name(ctx.device)
    try:
        for label, fn, conf in (("parallel", parallel, "parallel"), ("sequential", sequential, "cascaded")):
            mean, sd = _time(fn, images)
            nets = f"lung {lung.spec.name} + infection {first} ({conf})" + (f" + {clf.config.key}" if clf else "")
            table.add(label, nets, len(images), f"{mean:.1f}", f"{sd:.1f}", device)
            ctx.report.results.setdefault("system_time", {})[label] = {"mean_ms": mean, "sd_ms": sd, "n": len(images),
                                                                       "device": device}
    finally:
        pool.shutdown()
    table.note = note + " Parallel: the lung and the infection network run at once in two threads."
    ctx.report.table("system_time", table)
