"""Training: the thesis' setting (preset ``paper``), a two-core CPU setting (``quick``), a seconds-long
one for tests (``tiny``). Seeds fixed, resumable (``last.pt`` in the output folder), a progress bar with
loss and validation DSC, curves written as PNG, a self-describing checkpoint (``model.pt``) that records
the device, precision and number of processes it trained with. The epochs themselves run in ``fit.py``
(one device, or many under torchrun: see ``distributed.py``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from annotator.device import TrainingPlan, resolve_device, training_plan
from annotator.durability import write_bytes_durably
from annotator.errors import TrainingError, UnknownNameError
from annotator.segmentation import distributed, transform
from annotator.segmentation.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from annotator.segmentation.factory import build_model
from annotator.segmentation.fit import FitJob, fit, segmentation_loss  # noqa: F401 (segmentation_loss: benchmarks)
from annotator.segmentation.presets import TrainConfig
from annotator.segmentation.registry import ModelSpec

log = logging.getLogger(__name__)

FINISHED_FILE = "finished.json"  # a finished run: its identity and result (kept when last.pt is dropped)

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


def train_model(spec: ModelSpec, config: TrainConfig, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair],
                out_dir: Path | str, progress: bool = True, *, snapshot: dict | None = None,
                weights_path: Path | str | None = None, resume: bool = True, device: str = "auto") -> TrainResult:
    """Train ``spec`` on ``train_pairs``, keep the weights with the best validation DSC, write
    ``out_dir/model.pt`` (self-describing), ``out_dir/curves.png`` and ``out_dir/history.json``.

    A run interrupted after some epochs continues from ``out_dir/last.pt`` when spec, config and data
    match (on any device); a finished run returns its result without training again. ``device`` is the
    setting (auto, cpu, cuda, cuda:N, mps). Under torchrun, rank 0 prepares the job, broadcasts it and
    writes every file; another rank calling this receives rank 0's job (its own arguments unused), trains
    its share and returns rank 0's result.
    """
    ctx = distributed.context(device)
    if ctx is not None and not ctx.is_main:
        return run_job(ctx, ctx.broadcast())
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
    last_path = out_dir / "last.pt"
    model_path = out_dir / "model.pt"
    done = _finished_run(out_dir, identity, config) if resume else None
    saved = _load_resume_state(last_path) if resume and done is None else None
    if saved is not None and saved.get("identity") == identity and saved["state"]["finished"] \
            and not _extends(saved["state"], config) and model_path.is_file():
        done = _result_of(model_path, out_dir, saved["state"]["epoch"])  # finished before finished.json existed
    if done is not None:  # finished: nothing is prepared (its resume state may have gone at publishing)
        if ctx is not None:
            ctx.broadcast(("done", done))
        return done
    train_x, train_y = prepare_arrays(train_pairs, spec.input_size_px)
    val_x, val_y = prepare_arrays(val_pairs, spec.input_size_px)
    job = FitJob(spec, config, train_x, train_y, val_x, val_y,
                 state={"epoch": 0, "history": [], "best_dsc": -1.0, "best_loss": math.inf, "best_state": None,
                        "since_best_loss": 0, "train_s": 0.0, "finished": False})
    if weights_path is not None:  # an encoder-only file leaves the decoder at the seed's initial values
        torch.manual_seed(config.seed)
        job.start_weights = build_model(spec, weights_path).state_dict()
        job.weights_are_bar = True
    if saved is not None:
        if saved.get("identity") == identity:
            job.start_weights, job.optimizer_state = saved["model"], saved["optimizer"]
            job.scheduler_state, job.state = saved["scheduler"], {**saved["state"], "finished": False}
            log.info("resuming %s at epoch %d", spec.name, job.state["epoch"])
        else:
            log.warning("%s does not match this run (spec, config or data changed); starting afresh", last_path)
    resumed_from = job.state["epoch"]
    if ctx is not None:
        ctx.broadcast(("fit", job, device))
    plan = _plan(device, config, ctx)
    out_dir.mkdir(parents=True, exist_ok=True)

    def keep_resume_point(snapshot: dict) -> None:
        # written aside, then moved: a crash mid-write leaves the previous epoch's state readable
        partial = last_path.with_suffix(".pt.tmp")
        torch.save({"identity": identity, **snapshot}, partial)
        partial.replace(last_path)

    _, state = fit(job, plan, ctx, progress=progress, after_epoch=keep_resume_point)
    model = build_model(spec)
    model.load_state_dict(state["best_state"])
    model = model.eval()
    history = state["history"]
    metrics = {"val_dsc_input_px": state["best_dsc"], "best_epoch": state.get("best_epoch"),
               "epochs": state["epoch"], "train_s": round(state["train_s"], 1), "stop_reason": state["stop_reason"],
               "s_per_epoch": round(float(np.mean([h["epoch_s"] for h in history])), 2) if history else 0.0,
               "device": plan.device, "precision": plan.precision, "world_size": ctx.world_size if ctx else 1}
    ckpt = save_checkpoint(model_path, spec, model.state_dict(), preset=config.name, train_config=config.to_dict(),
                           snapshot=snap, metrics=metrics, history=history)
    metrics.update(_final_metrics(ckpt, model, val_pairs, config))
    ckpt = save_checkpoint(model_path, spec, model.state_dict(), preset=config.name, train_config=config.to_dict(),
                           snapshot=snap, metrics=metrics, history=history)
    curves = write_curves(history, out_dir / "curves.png", title=f"{spec.name} ({config.name})")
    (out_dir / "history.json").write_text(json.dumps({"model_version": ckpt.model_version, "history": history,
                                                      "metrics": metrics}, indent=2))
    write_bytes_durably(out_dir / FINISHED_FILE, json.dumps(
        {"identity": identity, "model_version": ckpt.model_version, "epoch": state["epoch"],
         "stop_reason": state["stop_reason"], "train_s": state["train_s"]}, default=str).encode())
    result = TrainResult(model_path, ckpt.model_version, metrics, curves, resumed_from)
    if ctx is not None:
        ctx.broadcast(("done", result))
    return result


def _finished_run(out_dir: Path, identity: dict, config: TrainConfig) -> TrainResult | None:
    """The result of a finished run of the same identity that ``config`` would not train further, read
    from ``finished.json`` and ``model.pt`` (no ``last.pt`` needed: publishing drops it)."""
    marker, model_path = out_dir / FINISHED_FILE, out_dir / "model.pt"
    if not (marker.is_file() and model_path.is_file()):
        return None
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if done.get("identity") != json.loads(json.dumps(identity, default=str)):
        return None
    more = _extends(done, config)
    if more and (out_dir / "last.pt").is_file():
        return None  # train it further from its resume state
    if more:
        log.warning("%s: its resume state was dropped when it was published; it is not trained further", out_dir)
    return _result_of(model_path, out_dir, done["epoch"])


def _extends(done: dict, config: TrainConfig) -> bool:
    """Would ``config`` train this finished run further (more epochs or time allowed, no early stop)?"""
    return (done["epoch"] < config.max_epochs and done.get("stop_reason") != "early stop"
            and (config.max_train_s is None or done["train_s"] < config.max_train_s))


def _result_of(model_path: Path, out_dir: Path, epochs: int) -> TrainResult:
    ckpt = load_checkpoint(model_path)
    log.info("%s already trained: %s", out_dir.name, ckpt.model_version)
    return TrainResult(model_path, ckpt.model_version, ckpt.metrics, out_dir / "curves.png", epochs)


def _plan(device: str, config: TrainConfig, ctx) -> TrainingPlan:
    return training_plan(ctx.device if ctx is not None else resolve_device(device), config.bf16, config.channels_last)


def run_job(ctx, message) -> TrainResult | None:
    """A worker rank's side of one ``train_model`` call: fit its share of rank 0's job, then take rank 0's
    result (rank 0 alone writes files)."""
    if message[0] == "fit":
        _, job, device = message
        fit(job, _plan(device, job.config, ctx), ctx, progress=False)
        message = ctx.broadcast()
    return message[1]


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
    """Validation scores at each image's own size after post-processing, and fast-path agreement (on the
    CPU, where the fast paths run)."""
    from annotator.evaluation.metrics import segmentation_scores
    from annotator.segmentation.predict import Predictor, measure_fast_paths

    eager = Predictor(model, ckpt.spec, ckpt.model_version, backend="eager", device="cpu")
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
