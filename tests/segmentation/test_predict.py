"""The Predictor: load once, predict any size, the fast paths against fp32 (or refused), bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotator.errors import ModelError, UnknownNameError
from annotator.evaluation.metrics import dice
from annotator.segmentation.checkpoint import load_checkpoint, save_checkpoint
from annotator.segmentation.predict import MIN_FAST_PATH_DICE, FastPathRefused, Predictor


def test_predicts_masks_at_each_images_own_size(tiny_run, odd_images, seed_pairs):
    result, _ = tiny_run
    predictor = Predictor.from_checkpoint(result.checkpoint_path)
    assert predictor.model_version == result.model_version
    assert predictor.spec.name == "unet-resnet18" and predictor.spec.input_size_px == 64
    images = [*odd_images, seed_pairs[0][0]]
    masks = predictor.predict(images)
    probs = predictor.predict_proba(images)
    assert [m.shape for m in masks] == [i.shape for i in images]
    assert all(p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1 for p in probs)
    # it learned the lungs of its training image
    assert dice(masks[-1], seed_pairs[0][1]) > 0.75


def test_onnx_matches_fp32(tiny_run, seed_pairs):
    result, _ = tiny_run
    images = [img for img, _ in seed_pairs]
    eager = Predictor.from_checkpoint(result.checkpoint_path)
    onnx = Predictor.from_checkpoint(result.checkpoint_path, backend="onnx", verify_images=images)
    assert onnx.backend == "onnx" and onnx.fast_path_dice >= MIN_FAST_PATH_DICE
    ref, got = eager.predict_proba(images), onnx.predict_proba(images)
    assert max(float(np.abs(a - b).max()) for a, b in zip(ref, got)) < 1e-3


def test_bf16_matches_fp32_or_is_refused(tiny_run, seed_pairs):
    result, _ = tiny_run
    images = [img for img, _ in seed_pairs]
    reference = Predictor.from_checkpoint(result.checkpoint_path).predict(images)
    try:
        fast = Predictor.from_checkpoint(result.checkpoint_path, backend="bf16", verify_images=images)
    except FastPathRefused as exc:
        assert "use backend 'eager'" in str(exc)
    else:
        assert np.mean([dice(a, b) for a, b in zip(fast.predict(images), reference)]) >= MIN_FAST_PATH_DICE


def test_stored_verification_is_used_and_a_failing_one_refused(tiny_run, tmp_path):
    result, _ = tiny_run
    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt.metrics["fast_path"]["onnx"]["dice_vs_fp32"] >= MIN_FAST_PATH_DICE
    assert Predictor.from_checkpoint(result.checkpoint_path, backend="onnx").backend == "onnx"
    bad = dict(ckpt.metrics, fast_path={"bf16": {"dice_vs_fp32": 0.9}})
    path = tmp_path / "bad.pt"
    save_checkpoint(path, ckpt.spec, ckpt.state_dict, metrics=bad)
    with pytest.raises(FastPathRefused, match="Dice 0.9000 < 0.995"):
        Predictor.from_checkpoint(path, backend="bf16")
    with pytest.raises(FastPathRefused, match="never verified"):
        Predictor.from_checkpoint(path, backend="onnx")
    fallback = Predictor.from_checkpoint(path, backend="bf16", on_refuse="eager")
    assert fallback.backend == "eager"
    with pytest.raises(UnknownNameError, match="valid: bf16, eager, onnx"):
        Predictor.from_checkpoint(path, backend="fp8")


def test_too_small_or_wrong_images_are_refused(tiny_run):
    predictor = Predictor.from_checkpoint(tiny_run[0].checkpoint_path)
    with pytest.raises(ModelError, match="image 1 is 20x20 px, too small"):
        predictor.predict([np.zeros((64, 64), np.uint8), np.zeros((20, 20), np.uint8)])
    with pytest.raises(ModelError, match="expected an HxW grayscale"):
        predictor.predict([np.zeros((64, 64, 3), np.uint8)])


def test_weights_that_do_not_fit_the_spec_are_refused(tiny_run, tmp_path):
    ckpt = load_checkpoint(tiny_run[0].checkpoint_path)
    state = dict(ckpt.state_dict)
    state["segmentation_head.0.weight"] = torch.zeros(3, 16, 3, 3)
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, ckpt.spec, state)
    with pytest.raises(ModelError, match="do not fit its spec unet-resnet18"):
        Predictor.from_checkpoint(path)
