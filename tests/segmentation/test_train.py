"""Training on real images: loss down and Dice up, a self-describing checkpoint, resume, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from annotator.errors import ModelError, TrainingError, UnknownNameError
from annotator.segmentation.checkpoint import load_checkpoint, weights_hash
from annotator.segmentation.registry import get_spec
from annotator.segmentation.presets import PRESETS, TrainConfig, get_preset
from annotator.segmentation.train import train_model


def test_presets_carry_the_thesis_setting():
    paper = PRESETS["paper"]
    assert (paper.lr, paper.betas, paper.batch_size, paper.max_epochs, paper.input_size_px) == (1e-4, (0.9, 0.999), 4, 40, 256)
    assert (paper.lr_factor, paper.lr_patience, paper.early_stop_patience) == (0.2, 3, 8)
    assert (paper.rotation_deg, paper.translate, paper.loss) == (25.0, 0.10, "ce")
    assert PRESETS["quick"].bf16 and PRESETS["quick"].input_size_px == 128
    assert PRESETS["tiny"].input_size_px == 64
    with pytest.raises(UnknownNameError, match=r"unknown training preset .*; valid: .*paper, quick, smoke, tiny"):
        get_preset("fast")


def test_short_training_drives_loss_down_and_dice_up(tiny_run):
    result, out_dir = tiny_run
    history = json.loads((out_dir / "history.json").read_text())["history"]
    assert len(history) == PRESETS["tiny"].max_epochs
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert max(h["val_dsc"] for h in history) > history[0]["val_dsc"] + 0.1
    assert result.metrics["val_dsc"] > 0.75  # two training images, scored at their own 256 px size
    assert (out_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_checkpoint_describes_itself(tiny_run):
    result, _ = tiny_run
    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt.spec == get_spec("unet-resnet18", input_size_px=64)
    assert ckpt.preset == "tiny" and ckpt.train_config["lr"] == PRESETS["tiny"].lr
    assert ckpt.snapshot["n_train"] == 2 and len(ckpt.snapshot["data_sha256"]) == 64
    assert ckpt.model_version == result.model_version == f"unet-resnet18-{weights_hash(ckpt.state_dict)[:10]}"
    assert ckpt.metrics["val"]["n"] == 2 and 0 < ckpt.metrics["val_dsc"] <= 1
    assert {"bf16", "onnx"} <= set(ckpt.metrics["fast_path"])
    assert len(ckpt.history) == ckpt.metrics["epochs"]


@pytest.mark.slow
def test_finished_run_is_not_trained_again_and_can_be_extended(seed_pairs, tmp_path):
    spec = get_spec("unet-resnet18")
    short = dataclasses.replace(PRESETS["tiny"], max_epochs=2, verify_fast_paths=False)
    first = train_model(spec, short, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    again = train_model(spec, short, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    assert again.model_version == first.model_version and again.resumed_from_epoch == 2
    longer = dataclasses.replace(short, max_epochs=3)
    extended = train_model(spec, longer, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    assert extended.resumed_from_epoch == 2 and extended.metrics["epochs"] == 3
    history = load_checkpoint(extended.checkpoint_path).history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # a straight three-epoch run reaches the same weights: the resume is exact
    straight = train_model(spec, longer, seed_pairs[:2], seed_pairs[:2], tmp_path / "straight", progress=False)
    assert straight.model_version == extended.model_version


@pytest.mark.slow
def test_a_truncated_resume_point_is_set_aside_not_fatal(seed_pairs, tmp_path):
    """A crash mid-write of last.pt (before writes went through a temporary file) must not block a rerun."""
    spec = get_spec("unet-resnet18")
    config = dataclasses.replace(PRESETS["tiny"], max_epochs=1, verify_fast_paths=False)
    first = train_model(spec, config, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    assert not list(tmp_path.glob("*.tmp"))
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:4000])
    (tmp_path / "finished.json").unlink()  # as if the crash came before the run finished
    again = train_model(spec, config, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    assert again.resumed_from_epoch == 0 and again.model_version == first.model_version  # retrained, same seed


@pytest.mark.slow
def test_a_published_run_needs_no_resume_state_to_be_run_again(seed_pairs, tmp_path, caplog):
    """Publishing drops last.pt (four times the network); finished.json still makes a rerun free."""
    spec = get_spec("unet-resnet18")
    short = dataclasses.replace(PRESETS["tiny"], max_epochs=2, verify_fast_paths=False)
    first = train_model(spec, short, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    done = json.loads((tmp_path / "finished.json").read_text())
    assert (done["model_version"], done["epoch"]) == (first.model_version, 2)
    (tmp_path / "last.pt").unlink()
    again = train_model(spec, short, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    assert (again.model_version, again.resumed_from_epoch) == (first.model_version, 2)
    assert not (tmp_path / "last.pt").exists()  # nothing was trained
    longer = dataclasses.replace(short, max_epochs=3)
    with caplog.at_level("WARNING"):
        kept = train_model(spec, longer, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False)
    assert kept.model_version == first.model_version and "resume state was dropped" in caplog.text
    other = train_model(spec, short, seed_pairs[1:3], seed_pairs[1:3], tmp_path, progress=False)
    assert other.model_version != first.model_version and other.resumed_from_epoch == 0  # other data: trained


def test_bad_training_input_is_refused_clearly(seed_pairs, tmp_path):
    spec, config = get_spec("unet-resnet18"), PRESETS["tiny"]
    with pytest.raises(TrainingError, match="training set is empty"):
        train_model(spec, config, [], seed_pairs[:1], tmp_path, progress=False)
    empty_masks = [(img, np.zeros_like(m)) for img, m in seed_pairs[:2]]
    with pytest.raises(TrainingError, match="none of the 2 training masks has a positive pixel"):
        train_model(spec, config, empty_masks, seed_pairs[:1], tmp_path, progress=False)
    image, mask = seed_pairs[0]
    with pytest.raises(TrainingError, match="must be the same HxW"):
        train_model(spec, config, [(image, mask[:100])], seed_pairs[:1], tmp_path, progress=False)
    with pytest.raises(TrainingError, match="smaller than 32 px"):
        train_model(spec, config, [(image[:20, :20], mask[:20, :20])], seed_pairs[:1], tmp_path, progress=False)
    assert not (tmp_path / "model.pt").exists()


def test_train_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["quick"].lr = 1.0  # type: ignore[misc]
    assert isinstance(PRESETS["quick"], TrainConfig)


def test_checkpoint_of_another_spec_or_corrupt_file_is_refused(tiny_run, tmp_path):
    result, _ = tiny_run
    with pytest.raises(ModelError, match="is a unet-resnet18, not a fpn-resnet18"):
        load_checkpoint(result.checkpoint_path, expect_spec="fpn-resnet18")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(result.checkpoint_path.read_bytes()[:5000])
    with pytest.raises(ModelError, match="corrupt or not a torch file"):
        load_checkpoint(broken)
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_training_from_given_weights_starts_at_the_fine_tune_lr(tiny_run, seed_pairs, tmp_path):
    result, _ = tiny_run
    config = dataclasses.replace(PRESETS["tiny"], max_epochs=1, fine_tune_lr=1e-4, verify_fast_paths=False)
    tuned = train_model(get_spec("unet-resnet18"), config, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False,
                        weights_path=result.checkpoint_path)
    ckpt = load_checkpoint(tuned.checkpoint_path)
    assert ckpt.train_config["lr"] == 1e-4 and ckpt.history[0]["lr"] == 1e-4
    # a fine-tune from trained weights starts where they are: better than a first epoch from scratch
    assert ckpt.history[0]["val_dsc"] > 0.75
    scratch = train_model(get_spec("unet-resnet18"), config, seed_pairs[:2], seed_pairs[:2], tmp_path / "s", progress=False)
    assert load_checkpoint(scratch.checkpoint_path).train_config["lr"] == PRESETS["tiny"].lr


def test_a_fine_tune_that_never_beats_its_start_returns_the_start(tiny_run, seed_pairs, tmp_path):
    result, _ = tiny_run
    wrecking = dataclasses.replace(PRESETS["tiny"], max_epochs=2, fine_tune_lr=50.0, verify_fast_paths=False)
    tuned = train_model(get_spec("unet-resnet18"), wrecking, seed_pairs[:2], seed_pairs[:2], tmp_path, progress=False,
                        weights_path=result.checkpoint_path)
    assert tuned.metrics["best_epoch"] == 0 and tuned.metrics["epochs"] == 2
    assert tuned.model_version == result.model_version  # the very same weights
    assert tuned.metrics["val_dsc"] == pytest.approx(result.metrics["val_dsc"], abs=1e-6)
