"""Many processes: ``annotator --nproc N <command>`` starts ``torchrun`` (torch.distributed.run) with N
processes on this machine, each running ``annotator <command>``; a command started by torchrun (ours or
the user's own ``torchrun --nnodes ... -m annotator ...`` across machines) joins the process group here,
before the command runs. Rank 0 runs the command; every other rank serves its trainings and predictions and ends with it
(see ``annotator/segmentation/distributed.py``). Torch is imported only when there are several processes."""

from __future__ import annotations

import subprocess
import sys

import typer

from annotator.device import distributed_env


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` with the ``--nproc N`` / ``--nproc=N`` option taken out."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs ``annotator argv`` (without --nproc) in ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "annotator", *without_nproc(argv)]


def launch_or_join(nproc: int, device: str) -> None:
    """Called before any command: with ``--nproc N`` (N > 1) outside torchrun, run the command under
    torchrun and exit with its status; inside torchrun, join the group (a worker rank serves trainings and
    exits here); else nothing."""
    if distributed_env() is None:
        if nproc > 1:
            raise typer.Exit(subprocess.run(torchrun_command(nproc, sys.argv[1:]), check=False).returncode)
        return
    from annotator.segmentation.distributed import context, serve

    ctx = context(device)
    if not ctx.is_main:
        serve(ctx, worker_job)
        raise typer.Exit(0)


def worker_job(ctx, message):
    """A worker rank's part in one job rank 0 broadcast: a sharded prediction, a classifier's training or a
    segmentation network's training."""
    if message[0] == "predict":
        from annotator.segmentation.sharded import run_job

        return run_job(ctx, message)
    if message[0] == "classify":
        from annotator.recognition.training import run_job

        return run_job(ctx, message)
    from annotator.segmentation.train import run_job

    return run_job(ctx, message)
