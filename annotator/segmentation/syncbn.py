"""Batch statistics over every process's share of a batch, on the CPU. Torch's ``SyncBatchNorm`` runs on
GPUs only; under DDP on CPUs (gloo) each process would otherwise normalise with the statistics of its own
few images, and N processes would train a different network than one process on the same batches. This
BatchNorm all-reduces the per-channel sums (forward) and the gradient sums (backward), so N processes
compute what one computes on the whole batch: the two-process test checks it against one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SyncBatchNorm2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps, group):
        channels = x.shape[1]
        dims = [0, 2, 3]
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_tensor([x.numel() / channels])])
        dist.all_reduce(stats, group=group)
        count = stats[-1]
        mean = stats[:channels] / count
        var = (stats[channels:2 * channels] / count - mean * mean).clamp_min(0)
        invstd = torch.rsqrt(var + eps)
        xhat = (x - mean[None, :, None, None]) * invstd[None, :, None, None]
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.count, ctx.group = count, group
        unbiased = var * count / (count - 1).clamp_min(1)
        ctx.mark_non_differentiable(mean, unbiased)
        return xhat * weight[None, :, None, None] + bias[None, :, None, None], mean, unbiased

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        xhat, invstd, weight = ctx.saved_tensors
        dims = [0, 2, 3]
        local = torch.cat([grad_y.sum(dims), (grad_y * xhat).sum(dims)])
        grad_weight, grad_bias = local[len(weight):].clone(), local[:len(weight)].clone()  # DDP averages these
        dist.all_reduce(local, group=ctx.group)
        mean_dy = (local[:len(weight)] / ctx.count)[None, :, None, None]
        mean_dy_xhat = (local[len(weight):] / ctx.count)[None, :, None, None]
        scale = (weight * invstd)[None, :, None, None]
        grad_x = scale * (grad_y - mean_dy - xhat * mean_dy_xhat)
        return grad_x, grad_weight, grad_bias, None, None


class CpuSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-time statistics span every process of the default group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        y, mean, unbiased_var = _SyncBatchNorm2d.apply(x.float(), self.weight, self.bias, self.eps, None)
        with torch.no_grad():
            self.num_batches_tracked += 1
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            self.running_var.mul_(1 - factor).add_(unbiased_var, alpha=factor)
        return y.to(x.dtype)


def convert(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced in place by a CpuSyncBatchNorm2d sharing its parameters
    and buffers (an optimiser made before still holds the same parameters)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d and child.affine and child.track_running_stats:
            sync = CpuSyncBatchNorm2d(child.num_features, child.eps, child.momentum)
            sync.weight, sync.bias = child.weight, child.bias
            sync.running_mean, sync.running_var = child.running_mean, child.running_var
            sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert(child)
    return module
