"""Training over many processes with torch.distributed, started by ``torchrun`` (or ``annotator --nproc N``).

One process per device. Rank 0 runs the command itself: it reads the workspace, decides what to train,
writes every checkpoint and DB row. The other ranks run no command: they wait for training jobs that rank
0 broadcasts (the prepared arrays, the spec, the config and any resume state), train their share of each
batch under DistributedDataParallel, and return to waiting; rank 0 ends them when its command ends. So the
protocol's code (workflows/) runs once and writes once, whatever the number of processes, and a worker on
another machine needs no copy of the workspace.

Control messages travel on their own gloo group with a long timeout (a worker may wait hours while rank 0
predicts a pool); the training's own collectives use the default group (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from annotator.device import distributed_env, resolve_device
from annotator.errors import TrainingError

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = timedelta(days=7)
TRAINING_TIMEOUT = timedelta(minutes=30)
STOP = None  # the message that ends a worker


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: str  # this process's torch device
    control: object  # the gloo group the jobs travel on

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, message=None):
        """Rank 0's ``message`` on every rank (any picklable object)."""
        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the ranks (identical on every rank)."""
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.control)
        return t.tolist()

    def max(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return float(t[0])


_CONTEXT: list[DistContext] = []  # the process's context, once made (a cache)
_ENDED: list[bool] = []  # set once the process has taken part in the final STOP


def context(device: str = "auto") -> DistContext | None:
    """This process's DistContext when started by torchrun with 2+ processes, else None. The first call
    joins the process group (every rank must make it: the CLI does at start-up)."""
    env = distributed_env()
    if env is None:
        return None
    if _CONTEXT:
        return _CONTEXT[0]
    rank, world, local_rank = env
    resolved = resolve_device(device, local_rank)
    backend = "nccl" if resolved.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(resolved)
    dist.init_process_group(backend, timeout=TRAINING_TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    ctx = DistContext(rank, world, local_rank, resolved, control)
    _CONTEXT.append(ctx)
    atexit.register(_finish, ctx)
    log.info("process %d of %d on %s (%s)", rank, world, resolved, backend)
    return ctx


def _finish(ctx: DistContext) -> None:
    """At exit: rank 0 tells the workers to stop; a worker that called ``train_model`` itself (a script run
    by torchrun on every rank) takes that message here. Then the group is left."""
    if _ENDED:
        return
    try:
        ctx.broadcast(STOP)
        _leave()
    except (RuntimeError, ValueError) as exc:  # a process already gone: torchrun ends the rest
        log.warning("could not leave the process group cleanly: %s", exc)
    _ENDED.append(True)


def serve(ctx: DistContext, run: Callable[[DistContext, object], object]) -> int:
    """A worker's life: run every job rank 0 broadcasts until it says stop; returns how many ran."""
    done = 0
    while (job := ctx.broadcast()) is not STOP:
        run(ctx, job)
        done += 1
    _ENDED.append(True)
    _leave()
    return done


def _leave() -> None:
    """Leave the process group. A DistributedDataParallel wrapper sits in a reference cycle, holding the
    group and gloo's work objects until the garbage collector runs: collected at interpreter shutdown,
    they abort the process (SIGABRT, "terminate called without an active exception"; seen about once in
    ten two-process runs). So collect first, then destroy the group while the interpreter is whole."""
    import gc

    gc.collect()
    dist.destroy_process_group()


def split_batch(batch_size: int, ctx: DistContext | None, sync_batchnorm: bool) -> int:
    """Each process's share of a batch: the preset's batch is the global one, split evenly, so N processes
    take the same optimisation steps as one (DDP averages their gradients)."""
    if ctx is None:
        return batch_size
    share, rest = divmod(batch_size, ctx.world_size)
    if rest or share < 1:
        raise TrainingError(f"a batch of {batch_size} does not split evenly over {ctx.world_size} processes; "
                            f"use a preset whose batch is a multiple of {ctx.world_size}, or fewer processes")
    if share < 2 and not sync_batchnorm:
        raise TrainingError(f"{ctx.world_size} processes leave {share} image per process and batch, too few "
                            f"for BatchNorm on {ctx.device}; use at most {batch_size // 2} processes")
    return share


def wrap(model: torch.nn.Module, ctx: DistContext | None, sync_batchnorm: bool):
    """The module the steps run: DDP over ``model`` (SyncBatchNorm on GPUs) or ``model`` itself."""
    if ctx is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_batchnorm and ctx.device.startswith("cuda"):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif sync_batchnorm:
        from annotator.segmentation import syncbn

        model = syncbn.convert(model)
    ids = [torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)
