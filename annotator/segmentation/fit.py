"""The training loop: epochs of batches on one device, or on many under DistributedDataParallel.

``train.train_model`` prepares a ``FitJob`` (arrays at the network's input size, the spec, the config, any
resume state) and runs ``fit`` on it; under torchrun it broadcasts the job first, and every other rank runs
the same ``fit`` on its share of each batch. The preset's batch is the global batch: N processes take the
same steps as one, each on batch/N images (a ``DistributedSampler`` over the epoch's positions), and the
averaged gradients are those of the whole batch. Augmentation draws from a generator keyed by (seed, epoch,
position), so an image is augmented the same way whichever process handles it. Decisions that end or shape
a run (validation scores, elapsed time) are reduced over the ranks, so every rank takes them alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from annotator.device import TrainingPlan, apply_plan, backward_step, to_device
from annotator.errors import UnknownNameError
from annotator.progress import progress_bar
from annotator.segmentation import transform
from annotator.segmentation.distributed import DistContext, split_batch, wrap
from annotator.segmentation.factory import build_model
from annotator.segmentation.presets import TrainConfig
from annotator.segmentation.registry import ModelSpec


@dataclass
class FitJob:
    """Everything a rank needs to train (picklable: rank 0 broadcasts it)."""

    spec: ModelSpec
    config: TrainConfig
    train_x: np.ndarray  # N x S x S uint8
    train_y: np.ndarray  # N x S x S {0,1}
    val_x: np.ndarray
    val_y: np.ndarray
    state: dict  # epoch, history, best_* ... (a fresh run's or the resumed one's)
    start_weights: dict | None = None  # CPU state dict to start from (given weights, or the resumed run's)
    optimizer_state: dict | None = None  # the resumed run's
    scheduler_state: dict | None = None
    weights_are_bar: bool = False  # given weights: epoch 0, the validation score to beat


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


class EpochPositions(torch.utils.data.Dataset):
    """The epoch's batches as positions 0..steps*batch-1; position p is image ``order[p]``, augmented by a
    generator keyed by (seed, epoch, p)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, order: np.ndarray, config: TrainConfig, epoch: int):
        self.images, self.masks, self.order, self.config, self.epoch = images, masks, order, config, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int):
        i = int(self.order[position])
        image, mask = self.images[i], self.masks[i]
        if self.config.rotation_deg or self.config.translate:
            rng = np.random.default_rng([self.config.seed, self.epoch, position])
            image, mask = transform.random_affine(image, mask, rng, self.config.rotation_deg, self.config.translate)
        return image, mask


def collate(items) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([i for i, _ in items])
    x = torch.from_numpy(transform.standardize(images)).unsqueeze(1)
    y = torch.from_numpy(np.stack([m for _, m in items]).astype(np.int64))
    return x, y


def _batch_to(x: torch.Tensor, plan: TrainingPlan) -> torch.Tensor:
    x = to_device(x, plan)
    return x.contiguous(memory_format=torch.channels_last) if plan.channels_last else x


@torch.no_grad()
def validate(model, images: np.ndarray, masks: np.ndarray, config: TrainConfig, plan: TrainingPlan,
             ctx: DistContext | None = None) -> tuple[float, float]:
    """Validation loss and mean per-image DSC at the network's input size (argmax, no post-processing);
    under DDP each rank scores every N-th image and the sums are reduced."""
    model.eval()
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    images, masks = images[rank::world], masks[rank::world]
    loss_sum, dice_sum = 0.0, 0.0
    for start in range(0, len(images), 16):
        x, y = collate(list(zip(images[start:start + 16], masks[start:start + 16])))
        with plan.autocast():
            logits = model(_batch_to(x, plan))
        logits = logits.float().cpu()
        loss_sum += float(segmentation_loss(logits, y, config.loss)) * len(x)
        pred = logits.argmax(dim=1).bool()
        truth = y.bool()
        inter = (pred & truth).sum(dim=(1, 2)).double()
        denom = (pred.sum(dim=(1, 2)) + truth.sum(dim=(1, 2))).double()
        dice_sum += float(torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.ones_like(denom)).sum())
    count = float(len(images))
    if ctx is not None:
        loss_sum, dice_sum, count = ctx.sum([loss_sum, dice_sum, count])
    return loss_sum / count, dice_sum / count


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


def _cpu_copy(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(job: FitJob, plan: TrainingPlan, ctx: DistContext | None = None, *, progress: bool = True,
        after_epoch: Callable[[dict], None] | None = None) -> tuple[torch.nn.Module, dict]:
    """Run the epochs of ``job`` on ``plan.device``; returns the (unwrapped) model and the final state.
    ``after_epoch(snapshot)`` (rank 0) receives the model, optimizer and scheduler states and the run state."""
    config, state = job.config, job.state
    apply_plan(plan)
    torch.manual_seed(config.seed)
    model = build_model(job.spec)
    if job.start_weights is not None:
        model.load_state_dict(job.start_weights)
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = wrap(model, ctx, plan.sync_batchnorm)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.lr_factor,
                                                           patience=config.lr_patience)
    if job.optimizer_state is not None:
        optimizer.load_state_dict(job.optimizer_state)
        scheduler.load_state_dict(job.scheduler_state)
    scaler = plan.scaler()
    if job.weights_are_bar and state["best_state"] is None:
        _, start_dsc = validate(model, job.val_x, job.val_y, config, plan, ctx)
        state.update(best_dsc=start_dsc, best_epoch=0, best_state=_cpu_copy(model))
    share = split_batch(config.batch_size, ctx, plan.sync_batchnorm)
    steps = max(math.ceil(len(job.train_x) / config.batch_size), config.min_steps_per_epoch)

    def elapsed() -> float:
        seconds = time.perf_counter() - started
        return ctx.max(seconds) if ctx is not None else seconds

    started = time.perf_counter() - state["train_s"]
    show = progress and (ctx is None or ctx.is_main)
    with progress_bar(f"training {job.spec.name} ({config.name})", config.max_epochs, enabled=show,
                      unit="epochs", completed=state["epoch"]) as bar:
        while state["epoch"] < config.max_epochs and not state["finished"]:
            epoch = state["epoch"]
            epoch_start = time.perf_counter()
            rng = np.random.default_rng([config.seed, epoch])
            repeats = math.ceil(steps * config.batch_size / len(job.train_x))
            order = np.concatenate([rng.permutation(len(job.train_x)) for _ in range(repeats)])
            positions = EpochPositions(job.train_x, job.train_y, order[:steps * config.batch_size], config, epoch)
            sampler = (torch.utils.data.DistributedSampler(positions, ctx.world_size, ctx.rank, shuffle=False)
                       if ctx is not None else None)
            loader = torch.utils.data.DataLoader(positions, batch_size=share, sampler=sampler, collate_fn=collate,
                                                 num_workers=plan.loader_workers, pin_memory=plan.pin_memory)
            net.train()
            total, seen = 0.0, 0
            for step, (x, y) in enumerate(loader):
                if config.schedule == "cosine":
                    _cosine_lr(optimizer, config, (epoch + step / steps) / config.max_epochs,
                               elapsed() if config.max_train_s else 0.0)
                x, y = _batch_to(x, plan), to_device(y, plan)
                with plan.autocast():
                    logits = net(x)
                loss = segmentation_loss(logits, y, config.loss)
                optimizer.zero_grad(set_to_none=True)
                backward_step(loss, optimizer, scaler)
                total += loss.item() * len(x)
                seen += len(x)
            if ctx is not None:
                total, seen = ctx.sum([total, float(seen)])
            train_loss = total / seen
            val_loss, val_dsc = validate(model, job.val_x, job.val_y, config, plan, ctx)
            if config.schedule == "plateau":
                scheduler.step(val_loss)
            epoch_s = time.perf_counter() - epoch_start
            if ctx is not None:
                epoch_s = ctx.max(epoch_s)
            state["epoch"] = epoch + 1
            state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                                     "val_dsc": val_dsc, "lr": optimizer.param_groups[0]["lr"], "epoch_s": epoch_s})
            if val_dsc > state["best_dsc"]:
                state.update(best_dsc=val_dsc, best_epoch=epoch + 1, best_state=_cpu_copy(model))
            if val_loss < state["best_loss"] - 1e-6:
                state["best_loss"], state["since_best_loss"] = val_loss, 0
            else:
                state["since_best_loss"] += 1
            state["train_s"] = elapsed()
            bar.update(completed=state["epoch"], info=f"loss {train_loss:.4f}, val DSC {val_dsc:.4f}")
            early = state["since_best_loss"] >= config.early_stop_patience
            budget = config.max_train_s is not None and state["train_s"] + epoch_s > config.max_train_s
            state["stop_reason"] = "early stop" if early else "time budget" if budget else "max epochs"
            state["finished"] = early or budget or state["epoch"] >= config.max_epochs
            if after_epoch is not None:
                after_epoch({"model": _cpu_copy(model), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "state": state})
    return model, state
