"""Where networks run, and how they train there. The ``device`` setting (``auto``, ``cpu``, ``cuda``,
``cuda:N``, ``mps``) is resolved here, once per entry point, to a torch device string; ``training_plan``
turns a device and a preset's CPU choices into the training settings:

- CUDA: mixed precision (bf16 autocast where the GPU has it, else fp16 with a GradScaler), channels_last,
  cuDNN autotuning, pinned-memory loaders with worker processes, SyncBatchNorm under DistributedDataParallel;
- CPU: the preset's own choices (bf16 autocast and channels_last for ``quick``/``demo``, fp32 otherwise),
  batches built in the training process, batch statistics synchronised under DDP (``segmentation/syncbn.py``);
- MPS: fp32, contiguous tensors.

Torch is imported inside the functions only: the settings and the CLI read this module without it.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from annotator.errors import ConfigError

DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
DEVICE_CHOICES = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps"
MAX_LOADER_WORKERS = 4


def check_device(value: str) -> str:
    """``value`` if it names a device this tool knows, else a ConfigError that lists them."""
    if not re.fullmatch(DEVICE_PATTERN, value or ""):
        raise ConfigError(f"device {value!r} is not known; allowed: {DEVICE_CHOICES}")
    return value


def resolve_device(value: str = "auto", local_rank: int | None = None) -> str:
    """The torch device string for the ``device`` setting: ``auto`` is ``cuda`` when torch sees a GPU, else
    ``cpu``. Under ``torchrun`` (``local_rank`` given, or LOCAL_RANK set) a bare ``cuda`` is the process's own
    GPU, ``cuda:<local rank>``. A GPU that is asked for but absent is a ConfigError saying what there is."""
    import torch

    check_device(value)
    if local_rank is None and os.environ.get("LOCAL_RANK", "").isdigit() and "WORLD_SIZE" in os.environ:
        local_rank = int(os.environ["LOCAL_RANK"])
    if value == "auto":
        value = "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {value!r}: torch {torch.__version__} sees no CUDA GPU here; "
                              "set ANNOTATOR_DEVICE=auto or cpu")
        index = int(value.split(":")[1]) if ":" in value else (local_rank or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {value!r}: there are {torch.cuda.device_count()} CUDA GPU(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return f"cuda:{index}"
    if value == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps': this torch has no Apple GPU (MPS) here; set ANNOTATOR_DEVICE=auto or cpu")
    return value


@dataclass(frozen=True)
class TrainingPlan:
    """How a training runs on its device (recorded in the checkpoint's metrics and the model's row)."""

    device: str  # a torch device string: cpu, cuda:0, mps
    precision: str  # fp32 | bf16 | fp16 (autocast dtype of the forward pass)
    grad_scaler: bool  # fp16 needs loss scaling
    channels_last: bool
    cudnn_benchmark: bool
    pin_memory: bool
    loader_workers: int
    sync_batchnorm: bool  # under DDP: batch statistics over every process's share of the batch

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def autocast(self):
        """The forward pass's autocast context (a no-op context in fp32)."""
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device_type, dtype=dtype)

    def scaler(self):
        """fp16's GradScaler, or None (bf16 and fp32 need none)."""
        import torch

        return torch.amp.GradScaler(self.device_type) if self.grad_scaler else None

    def describe(self, world_size: int = 1) -> dict:
        return {**asdict(self), "world_size": world_size}


def training_plan(device: str, cpu_bf16: bool = False, cpu_channels_last: bool = False) -> TrainingPlan:
    """The settings for training on ``device`` (a resolved torch device string); ``cpu_bf16`` and
    ``cpu_channels_last`` are the preset's choices for the CPU, kept as they are there."""
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        bf16 = torch.cuda.is_bf16_supported()
        workers = min(MAX_LOADER_WORKERS, max((os.cpu_count() or 1) // max(torch.cuda.device_count(), 1) - 1, 0))
        return TrainingPlan(device, "bf16" if bf16 else "fp16", grad_scaler=not bf16, channels_last=True,
                            cudnn_benchmark=True, pin_memory=True, loader_workers=workers, sync_batchnorm=True)
    if kind == "mps":
        return TrainingPlan(device, "fp32", False, False, False, False, 0, False)
    return TrainingPlan(device, "bf16" if cpu_bf16 else "fp32", False, cpu_channels_last, False, False, 0, True)


def backward_step(loss, optimizer, scaler=None) -> None:
    """Backpropagate ``loss`` and step ``optimizer``, through ``scaler`` (``TrainingPlan.scaler()``) if any."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def apply_plan(plan: TrainingPlan) -> None:
    """Process-wide switches of the plan (cuDNN autotuning)."""
    import torch

    if plan.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True


def to_device(tensor, plan: TrainingPlan):
    """A host tensor onto the plan's device: pinned and copied asynchronously on CUDA."""
    if plan.device == "cpu":
        return tensor
    if plan.pin_memory and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(plan.device, non_blocking=plan.pin_memory)


def distributed_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when this process was started by ``torchrun`` with more than one
    process (RANK, WORLD_SIZE and LOCAL_RANK set), else None. Reads the environment only."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if not all(os.environ.get(n, "").isdigit() for n in names) or int(os.environ["WORLD_SIZE"]) < 2:
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
