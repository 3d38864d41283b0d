"""Training: the thesis' setting (preset ``paper``), a two-core CPU setting (``quick``), a seconds-long
one for tests (``tiny``). Seeds fixed, resumable (``last.pt`` in the output folder), a progress bar with
loss and validation DSC, curves written as PNG, a self-describing checkpoint (``model.pt``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from annotator.errors import TrainingError
from annotator.progress import progress_bar
from annotator.segmentation import transform
from annotator.segmentation.checkpoint import Checkpoint, save_checkpoint
from annotator.segmentation.factory import build_model
from annotator.segmentation.presets import TrainConfig
from annotator.segmentation.registry import ModelSpec

log = logging.getLogger(__name__)

Pair = tuple[np.ndarray, np.ndarray]  # (image HxW uint8, mask HxW uint8 {0,255})


@dataclass(frozen=True)
class TrainResult:
    checkpoint_path: Path
    model_version: str
    metrics: dict
    curves_path: Path | None = None
    resumed_from_epoch: int = 0


# -- data ---------------------------------------------------------------------------------------------
def _check_pairs(pairs: Sequence[Pair], what: str, size_px: int) -> None:
    if not pairs:
        raise TrainingError(f"the {what} set is empty; give at least one (image, mask) pair")
    for i, (image, mask) in enumerate(pairs):
        if image.ndim != 2 or mask.shape != image.shape:
            raise TrainingError(f"{what} pair {i}: image {image.shape} and mask {mask.shape} must be the same HxW")
        if min(image.shape) < transform.MIN_IMAGE_PX:
            raise TrainingError(f"{what} pair {i}: image {image.shape[1]}x{image.shape[0]} is smaller than "
                                f"{transform.MIN_IMAGE_PX} px; the network's input is {size_px} px")


def prepare_arrays(pairs: Sequence[Pair], size_px: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([transform.resize_image(img, size_px) for img, _ in pairs])
    masks = np.stack([transform.resize_mask(m, size_px) for _, m in pairs])
    return images, masks


def data_fingerprint(pairs: Sequence[Pair]) -> str:
    h = hashlib.sha256()
    for image, mask in pairs:
        h.update(np.ascontiguousarray(image).tobytes())
        h.update(np.ascontiguousarray(mask > 0).tobytes())
    return h.hexdigest()


def _augment_batch(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, config: TrainConfig):
    if not config.rotation_deg and not config.translate:
        return images, masks
    out = [transform.random_affine(i, m, rng, config.rotation_deg, config.translate) for i, m in zip(images, masks)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


# -- loss and steps -----------------------------------------------------------------------------------
def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    logits = logits.float()
    loss = F.cross_entropy(logits, target)
    if kind == "ce+dice":
        prob = logits.softmax(dim=1)[:, 1]
        tgt = target.float()
        inter = (prob * tgt).sum(dim=(1, 2))
        dice = (2 * inter + 1.0) / (prob.sum(dim=(1, 2)) + tgt.sum(dim=(1, 2)) + 1.0)
        loss = loss + (1 - dice).mean()
    elif kind != "ce":
        raise UnknownNameError("loss", kind, ("ce", "ce+dice"))
    return loss


def _to_tensor(images: np.ndarray, config: TrainConfig) -> torch.Tensor:
    x = torch.from_numpy(transform.standardize(images)).unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def _forward(model, x, config: TrainConfig):
    if config.bf16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)
    return model(x)


@torch.no_grad()
def _validate(model, images: np.ndarray, masks: np.ndarray, config: TrainConfig) -> tuple[float, float]:
    """Validation loss and mean per-image DSC at the network's input size (argmax, no post-processing)."""
    model.eval()
    losses, dices = [], []
    for start in range(0, len(images), 16):
        x = _to_tensor(images[start:start + 16], config)
        y = torch.from_numpy(masks[start:start + 16].astype(np.int64))
        logits = _forward(model, x, config).float()
        losses.append(float(segmentation_loss(logits, y, config.loss)) * len(x))
        pred = logits.argmax(dim=1).bool()
        truth = y.bool()
        inter = (pred & truth).sum(dim=(1, 2)).double()
        denom = (pred.sum(dim=(1, 2)) + truth.sum(dim=(1, 2))).double()
        dices.extend(torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.ones_like(denom)).tolist())
    return sum(losses) / len(images), float(np.mean(dices))


# -- the loop -----------------------------------------------------------------------------------------
def _cosine_lr(optimizer, config: TrainConfig, epoch_share: float, elapsed_s: float) -> None:
    """Cosine decay from lr to min_lr over the run; the run's end is the epoch limit or the time budget,
    whichever is nearer (deterministic when the budget does not bind)."""
    share = epoch_share
    if config.max_train_s:
        share = max(share, elapsed_s / config.max_train_s)
    share = min(max(share, 0.0), 1.0)
    lr = config.min_lr + (config.lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * share))
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_model(spec: ModelSpec, config: TrainConfig, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair],
                out_dir: Path | str, progress: bool = True, *, snapshot: dict | None = None,
                weights_path: Path | str | None = None, resume: bool = True) -> TrainResult:
    """Train ``spec`` on ``train_pairs``, keep the weights with the best validation DSC, write
    ``out_dir/model.pt`` (self-describing), ``out_dir/curves.png`` and ``out_dir/history.json``.

    A run interrupted after some epochs continues from ``out_dir/last.pt`` when spec, config and data
    match; a finished run returns its result without training again.
    """
    out_dir = Path(out_dir)
    if weights_path is not None and config.fine_tune_lr is not None:
        config = dataclasses.replace(config, lr=config.fine_tune_lr)
    spec = spec.with_input_size(config.input_size_px)
    _check_pairs(train_pairs, "training", spec.input_size_px)
    _check_pairs(val_pairs, "validation", spec.input_size_px)
    if config.schedule not in ("plateau", "cosine"):
        raise UnknownNameError("learning-rate schedule", config.schedule, ("cosine", "plateau"))
    if not any(np.any(m > 0) for _, m in train_pairs):
        raise TrainingError(f"none of the {len(train_pairs)} training masks has a positive pixel")
    fingerprint = data_fingerprint(list(train_pairs) + list(val_pairs))
    snap = {"n_train": len(train_pairs), "n_val": len(val_pairs), "data_sha256": fingerprint, **(snapshot or {})}
    # what must match to resume; max_epochs and max_train_s may grow (train a finished run further)
    identity = {"spec": spec.to_dict(), "data_sha256": fingerprint, "weights": str(weights_path) if weights_path else None,
                "config": {k: v for k, v in config.to_dict().items() if k not in ("max_epochs", "max_train_s")}}

    torch.manual_seed(config.seed)
    model = build_model(spec, weights_path)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.lr_factor,
                                                           patience=config.lr_patience)
    state = {"epoch": 0, "history": [], "best_dsc": -1.0, "best_loss": math.inf, "best_state": None,
             "since_best_loss": 0, "train_s": 0.0, "finished": False}
    last_path = out_dir / "last.pt"
    model_path = out_dir / "model.pt"
    resumed_from = 0
    saved = _load_resume_state(last_path) if resume else None
    if saved is not None:
        if saved.get("identity") == identity:
            done = saved["state"]
            more = (done["epoch"] < config.max_epochs and done.get("stop_reason") != "early stop"
                    and (config.max_train_s is None or done["train_s"] < config.max_train_s))
            if done["finished"] and not more and model_path.is_file():
                from annotator.segmentation.checkpoint import load_checkpoint

                ckpt = load_checkpoint(model_path)
                log.info("%s already trained: %s", spec.name, ckpt.model_version)
                return TrainResult(model_path, ckpt.model_version, ckpt.metrics, out_dir / "curves.png",
                                   saved["state"]["epoch"])
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state = saved["state"]
            state["finished"] = False
            resumed_from = state["epoch"]
            log.info("resuming %s at epoch %d", spec.name, resumed_from)
        else:
            log.warning("%s does not match this run (spec, config or data changed); starting afresh", last_path)

    train_x, train_y = prepare_arrays(train_pairs, spec.input_size_px)
    val_x, val_y = prepare_arrays(val_pairs, spec.input_size_px)
    if weights_path is not None and state["best_state"] is None:
        # training on from given weights: they are the bar to beat ("epoch 0"); when no epoch beats them
        # on validation, the result is those weights, unchanged (best_epoch 0)
        _, start_dsc = _validate(model, val_x, val_y, config)
        state.update(best_dsc=start_dsc, best_epoch=0,
                     best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
    steps = max(math.ceil(len(train_x) / config.batch_size), config.min_steps_per_epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter() - state["train_s"]
    with progress_bar(f"training {spec.name} ({config.name})", config.max_epochs, enabled=progress,
                      unit="epochs", completed=state["epoch"]) as bar:
        while state["epoch"] < config.max_epochs and not state["finished"]:
            epoch = state["epoch"]
            epoch_start = time.perf_counter()
            rng = np.random.default_rng([config.seed, epoch])
            repeats = math.ceil(steps * config.batch_size / len(train_x))
            order = np.concatenate([rng.permutation(len(train_x)) for _ in range(repeats)])
            model.train()
            total, seen = 0.0, 0
            for step in range(steps):
                if config.schedule == "cosine":
                    _cosine_lr(optimizer, config, (epoch + step / steps) / config.max_epochs,
                               time.perf_counter() - started)
                idx = order[step * config.batch_size:(step + 1) * config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    idx = np.concatenate([idx, order[:1]])
                images, masks = _augment_batch(train_x[idx], train_y[idx], rng, config)
                x = _to_tensor(images, config)
                y = torch.from_numpy(masks.astype(np.int64))
                loss = segmentation_loss(_forward(model, x, config), y, config.loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                seen += len(idx)
            train_loss = total / seen
            val_loss, val_dsc = _validate(model, val_x, val_y, config)
            if config.schedule == "plateau":
                scheduler.step(val_loss)
            epoch_s = time.perf_counter() - epoch_start
            state["epoch"] = epoch + 1
            state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                                     "val_dsc": val_dsc, "lr": optimizer.param_groups[0]["lr"], "epoch_s": epoch_s})
            if val_dsc > state["best_dsc"]:
                state["best_dsc"] = val_dsc
                state["best_epoch"] = epoch + 1
                state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if val_loss < state["best_loss"] - 1e-6:
                state["best_loss"], state["since_best_loss"] = val_loss, 0
            else:
                state["since_best_loss"] += 1
            state["train_s"] = time.perf_counter() - started
            bar.update(completed=state["epoch"], info=f"loss {train_loss:.4f}, val DSC {val_dsc:.4f}")
            stop = state["since_best_loss"] >= config.early_stop_patience
            if config.max_train_s is not None and state["train_s"] + epoch_s > config.max_train_s:
                log.info("%s: time budget %.0f s reached after %d epochs", spec.name, config.max_train_s, epoch + 1)
                stop = True
            state["stop_reason"] = ("early stop" if state["since_best_loss"] >= config.early_stop_patience
                                    else "time budget" if stop else "max epochs")
            state["finished"] = stop or state["epoch"] >= config.max_epochs
            # written aside, then moved: a crash mid-write leaves the previous epoch's state readable
            partial = last_path.with_suffix(".pt.tmp")
            torch.save({"identity": identity, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state}, partial)
            partial.replace(last_path)

    model.load_state_dict(state["best_state"])
    model = model.to(memory_format=torch.contiguous_format).eval()
    history = state["history"]
    metrics = {"val_dsc_input_px": state["best_dsc"], "best_epoch": state.get("best_epoch"),
               "epochs": state["epoch"], "train_s": round(state["train_s"], 1), "stop_reason": state["stop_reason"],
               "s_per_epoch": round(float(np.mean([h["epoch_s"] for h in history])), 2)}
    ckpt = save_checkpoint(model_path, spec, model.state_dict(), preset=config.name, train_config=config.to_dict(),
                           snapshot=snap, metrics=metrics, history=history)
    metrics.update(_final_metrics(ckpt, model, val_pairs, config))
    ckpt = save_checkpoint(model_path, spec, model.state_dict(), preset=config.name, train_config=config.to_dict(),
                           snapshot=snap, metrics=metrics, history=history)
    curves = write_curves(history, out_dir / "curves.png", title=f"{spec.name} ({config.name})")
    (out_dir / "history.json").write_text(json.dumps({"model_version": ckpt.model_version, "history": history,
                                                      "metrics": metrics}, indent=2))
    return TrainResult(model_path, ckpt.model_version, metrics, curves, resumed_from)


def _load_resume_state(path: Path) -> dict | None:
    """The saved state of an interrupted or finished run, or None (no file, or one that does not read)."""
    import torch

    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)  # plain types only: no code runs
    except Exception as exc:  # truncated or foreign file: it is only a resume point, training starts afresh
        log.warning("%s does not read (%s); starting afresh", path, exc)
        return None
    return saved if isinstance(saved, dict) else None


def _final_metrics(ckpt: Checkpoint, model, val_pairs: Sequence[Pair], config: TrainConfig) -> dict:
    """Validation scores at each image's own size after post-processing, and fast-path agreement."""
    from annotator.evaluation.metrics import segmentation_scores
    from annotator.segmentation.predict import Predictor, measure_fast_paths

    eager = Predictor(model, ckpt.spec, ckpt.model_version, backend="eager")
    images = [img for img, _ in val_pairs]
    predicted = eager.predict(images)
    scores = segmentation_scores(predicted, [m for _, m in val_pairs])
    out: dict = {"val": scores, "val_dsc": scores["dsc"]}
    if config.verify_fast_paths and ckpt.path is not None:
        out["fast_path"] = measure_fast_paths(ckpt, model, images[: config.fast_path_images], predicted)
    return out


def write_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Loss (train, validation) and validation DSC per epoch, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(epochs, [h["val_dsc"] for h in history], color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation DSC")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
