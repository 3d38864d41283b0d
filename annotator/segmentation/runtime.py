"""CPU threads for torch. On a machine shared with other jobs, two OpenMP threads that get descheduled
spin at their barriers: measured here, a U-Net-ResNet18 step took 10x longer with 2 threads than with 1
while the load average was 8 on 2 cores. So unless the settings name a number, a busy machine gets one
thread and a quiet one torch's default."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def configure_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads: ``requested`` if > 0, else 1 on a busy machine, else the default."""
    cores = os.cpu_count() or 1
    if requested > 0:
        threads = requested
    else:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = 1 if load >= cores - 0.5 else torch.get_num_threads()
        if threads == 1 and cores > 1:
            log.warning("machine busy (load %.1f on %d cores): torch uses 1 thread; set ANNOTATOR_TORCH_THREADS "
                        "to override", load, cores)
    torch.set_num_threads(threads)
    return threads
