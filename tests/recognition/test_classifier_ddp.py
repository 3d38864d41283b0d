"""Classifier training under torchrun: two gloo processes on the CPU train what one process trains (each
a half of every batch, gradients averaged, batch statistics synchronised, the same early-stopping
schedule), and rank 0 alone saves. Real images, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HELPER = Path(__file__).with_name("ddp_classifier.py")
EPOCHS = 3


def test_two_gloo_processes_train_the_classifier_one_process_trains(sample_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1",
           "ANNOTATOR_SAMPLE_DATA": str(sample_root), "ANNOTATOR_DEVICE": "cpu"}
    for name, launcher in (("one", [sys.executable]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node=2"])):
        done = subprocess.run([*launcher, str(HELPER), str(tmp_path / name), str(EPOCHS)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    one = json.loads((tmp_path / "one" / "rank-0.json").read_text())
    two = json.loads((tmp_path / "two" / "rank-0.json").read_text())
    assert json.loads((tmp_path / "two" / "rank-1.json").read_text())["jobs"] == 1  # rank 1 trained its half
    assert not (tmp_path / "one" / "rank-1.json").exists()
    assert [h["images"] for h in one["history"]] == [h["images"] for h in two["history"]] == [20] * EPOCHS
    for a, b in zip(one["history"], two["history"], strict=True):
        # float rounding only (summation order across processes), which Adam's normalised steps carry along
        assert abs(a["loss"] - b["loss"]) <= 0.02 * a["loss"], (one["history"], two["history"])
        assert abs(a["val_loss"] - b["val_loss"]) <= 0.02 * a["val_loss"], (one["history"], two["history"])
        assert a["lr"] == b["lr"]
    assert one["history"][-1]["loss"] < one["history"][0]["loss"]  # it learnt
    w1 = torch.load(tmp_path / "one" / "classifier.pt", weights_only=False)["state_dict"]
    w2 = torch.load(tmp_path / "two" / "classifier.pt", weights_only=False)["state_dict"]
    params = [k for k in w1 if w1[k].is_floating_point() and "running_" not in k]
    diff = torch.sqrt(sum(((w1[k] - w2[k]) ** 2).sum() for k in params))
    norm = torch.sqrt(sum((w1[k] ** 2).sum() for k in params))
    assert float(diff / norm) < 0.02
