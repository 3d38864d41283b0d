"""Classifier training: the thesis' schedule (section 4.1) on prepared arrays, in one process or under
torchrun with DistributedDataParallel. A heavy leaf: imports torch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from annotator.device import apply_plan, backward_step, resolve_device, to_device, training_plan
from annotator.errors import TrainingError
from annotator.recognition.augmentation import IDENTITY, augment, balance_plan
from annotator.recognition.classifier import (ClassifierConfig, build_network, predict_arrays, save_checkpoint,
                                               to_tensor)

log = logging.getLogger(__name__)


@dataclass
class ClassifierResult:
    checkpoint_path: Path
    model_version: str
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epoch: int | None = None  # with a validation set: the epoch whose weights were kept
    stopped_early: bool = False


@dataclass(frozen=True)
class ClassifierJob:
    """Everything a rank needs to train a classifier (picklable: rank 0 broadcasts it under torchrun)."""

    config: ClassifierConfig
    arrays: Sequence[np.ndarray]
    labels: Sequence[int]
    class_names: Sequence[str]
    validation: tuple[Sequence[np.ndarray], Sequence[int]] | None
    device: str


def train_classifier(
    config: ClassifierConfig,
    arrays: Sequence[np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str],
    out_path: Path,
    progress: Callable[[int, int], None] | None = None,
    validation: tuple[Sequence[np.ndarray], Sequence[int]] | None = None,
    device: str = "auto",
) -> ClassifierResult:
    """Train on prepared arrays (``preprocessing.prepare`` output) and save a checkpoint at ``out_path``.

    With ``validation`` (arrays, labels) training follows the thesis' section 4.1: the validation loss is
    measured after every epoch, the learning rate is divided by 5 when it has not improved for
    ``lr_patience`` epochs, training stops after ``patience`` epochs without improvement, and the best
    epoch's weights are saved. Without it, ``epochs`` epochs run and the last weights are saved.
    ``progress(done_steps, total_steps)`` is called after every batch (the CLI draws the bar). ``device`` is
    the setting (auto, cpu, cuda...): on a GPU mixed precision and channels_last (``annotator.device``).

    Under torchrun (``annotator --nproc N``) rank 0 broadcasts the job and every rank trains its share of
    each batch under DistributedDataParallel (batch statistics synchronised), as the segmentation
    trainings do (``annotator.segmentation.distributed``); rank 0 alone saves.
    """
    if len(arrays) != len(labels):
        raise TrainingError(f"{len(arrays)} images but {len(labels)} labels")
    present = sorted(set(int(v) for v in labels))
    if len(present) < 2:
        raise TrainingError(f"training needs at least 2 classes, got {[class_names[i] for i in present]}")
    from annotator.segmentation import distributed

    job = ClassifierJob(config, arrays, labels, class_names, validation, device)
    ctx = distributed.context(device)
    if ctx is not None:
        ctx.broadcast(("classify", job))
    model, history, seconds, stopper, on = _fit(job, ctx, progress)
    version = save_checkpoint(model, config, class_names, out_path, history, on.describe())
    return ClassifierResult(out_path, version, history, seconds, stopper.best_epoch if stopper else None,
                            bool(stopper and stopper.exhausted))


def run_job(ctx, message) -> None:
    """A worker rank's side of one ``train_classifier`` call: train its share of every batch."""
    _fit(message[1], ctx, None)


def _fit(job: ClassifierJob, ctx, progress: Callable[[int, int], None] | None):
    """The training loop of every rank: (model, history, seconds, early stopper, device plan)."""
    from annotator.segmentation.distributed import wrap

    config, arrays, labels = job.config, job.arrays, job.labels
    world, rank = (ctx.world_size, ctx.rank) if ctx is not None else (1, 0)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_network(config.arch, len(job.class_names), Path(config.weights_path) if config.weights_path else None)
    on = training_plan(ctx.device if ctx is not None else resolve_device(job.device))  # the device plan
    apply_plan(on)
    model = model.to(on.device, memory_format=torch.channels_last if on.channels_last else torch.preserve_format)
    net = wrap(model, ctx, sync_batchnorm=True)  # the model itself in one process
    model = net.module if ctx is not None else net
    scaler = on.scaler()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    plan = balance_plan(labels, seed=config.seed, cap=config.balance_cap) if config.balance else [(i, IDENTITY) for i in range(len(labels))]
    steps_per_epoch = (len(plan) + config.batch_size - 1) // config.batch_size
    total = steps_per_epoch * config.epochs
    history: list[dict] = []
    start = time.perf_counter()
    step = 0
    validation = job.validation
    stopper = _Plateau(model, optimiser, config) if validation is not None and len(validation[0]) else None

    def over_budget() -> bool:
        if config.max_train_s is None:  # no budget: no clock to agree on
            return False
        elapsed = time.perf_counter() - start
        if ctx is not None:
            elapsed = ctx.max(elapsed)  # every rank stops at the same step
        return elapsed > config.max_train_s

    net.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(plan))
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(steps_per_epoch):
            batch = [plan[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]]
            if len(batch) < 2 * world:  # BatchNorm needs 2 samples (and every rank a share)
                continue
            share = len(batch) // world
            chunk = batch[rank * share:(rank + 1) * share]  # the whole batch in one process
            x = to_device(to_tensor(np.stack([augment(arrays[i], aug) for i, aug in chunk])), on)
            y = to_device(torch.tensor([int(labels[i]) for i, _ in chunk]), on)
            optimiser.zero_grad()
            with on.autocast():
                logits = net(x)
            loss = loss_fn(logits.float(), y)
            backward_step(loss, optimiser, scaler)
            loss_sum += loss.item() * len(chunk)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(chunk)
            step += 1
            if progress:
                progress(step, total)
            if over_budget():  # a shared CPU can make one epoch outlast the budget: end mid-epoch
                break
        if ctx is not None:
            loss_sum, correct, seen = ctx.sum([loss_sum, float(correct), float(seen)])
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                        "images": int(seen)})
        if stopper is not None:
            history[-1].update(stopper.score(epoch + 1, *validation, agree=ctx.broadcast if ctx else None))
            net.train()
        log.info("%s epoch %d: %s", config.key, epoch + 1, history[-1])
        if stopper is not None and stopper.exhausted:
            break
        if over_budget():
            log.info("%s: time budget of %.0f s spent in epoch %d", config.key, config.max_train_s, epoch + 1)
            break
    seconds = time.perf_counter() - start
    if stopper is not None:
        model.load_state_dict(stopper.best_state)
    return model, history, seconds, stopper, on


class _Plateau:
    """Section 4.1's schedule on the validation loss: lr / 5 after ``lr_patience`` epochs without a new
    best, stop after ``patience``; remembers the best epoch's weights."""

    def __init__(self, model: nn.Module, optimiser: torch.optim.Optimizer, config: ClassifierConfig):
        self.model = model
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="min", factor=config.lr_factor,
                                                                    patience=config.lr_patience)
        self.optimiser = optimiser
        self.patience = config.patience
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.since_best = 0

    @property
    def exhausted(self) -> bool:
        return self.since_best >= self.patience

    def score(self, epoch: int, arrays: Sequence[np.ndarray], labels: Sequence[int],
              agree: Callable | None = None) -> dict:
        """The epoch's validation loss and accuracy; ``agree`` (rank 0's value on every rank, under DDP)
        makes every process take the same schedule step."""
        proba = predict_arrays(self.model, arrays)
        truth = np.asarray(labels, dtype=np.int64)
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, None))))
        if agree is not None:
            loss = agree(loss)
        lr = self.optimiser.param_groups[0]["lr"]
        self.scheduler.step(loss)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.since_best = loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.since_best += 1
        return {"val_loss": loss, "val_accuracy": float(np.mean(proba.argmax(1) == truth)), "lr": lr}
