"""Run by tests/recognition/test_classifier_ddp.py, in one process or under torchrun: a ResNet18 classifier
(BatchNorm: the synchronised statistics matter) trained on real sample images at 64 px with fixed seeds.
Rank 0 writes the history, its checkpoint and what it got; another rank serves as ``annotator --nproc``
workers do and writes how many jobs it took.

usage: ddp_classifier.py OUT_DIR EPOCHS
"""

import json
import os
import sys
from pathlib import Path

import torch

from annotator.cli.launch import worker_job
from annotator.imaging.io import read_image
from annotator.recognition.classifier import ClassifierConfig
from annotator.recognition.preprocessing import prepare
from annotator.recognition.training import train_classifier
from annotator.segmentation import distributed

torch.set_num_threads(1)
out_dir, epochs = Path(sys.argv[1]), int(sys.argv[2])
out_dir.mkdir(parents=True, exist_ok=True)
ctx = distributed.context("cpu")
if ctx is not None and not ctx.is_main:
    jobs = distributed.serve(ctx, worker_job)
    (out_dir / f"rank-{ctx.rank}.json").write_text(json.dumps({"jobs": jobs}))
    sys.exit(0)
sample = Path(os.environ["ANNOTATOR_SAMPLE_DATA"])
names = ("covid", "normal")
arrays, labels = [], []
for index, name in enumerate(names):
    for f in sorted((sample / "images" / name).glob("*.jpg"))[:10]:
        arrays.append(prepare(read_image(f), "stack", 64))
        labels.append(index)
val = ([arrays[0], arrays[1], arrays[10], arrays[11]], [0, 0, 1, 1])
config = ClassifierConfig(arch="resnet18", input_size_px=64, epochs=epochs, batch_size=8, learning_rate=1e-4,
                          balance=False)
result = train_classifier(config, arrays, labels, names, out_dir / "classifier.pt", validation=val, device="cpu")
(out_dir / "rank-0.json").write_text(json.dumps({"history": result.history, "model_version": result.model_version,
                                                 "best_epoch": result.best_epoch}))
