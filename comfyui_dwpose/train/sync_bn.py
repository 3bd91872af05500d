"""BatchNorm over the global batch when training in several processes.

The released configs use SyncBN: every BatchNorm (the teacher's too) normalises with the
statistics of all GPUs' samples together, so the result does not depend on how the global
batch is split. On CUDA that is torch's ``SyncBatchNorm``. torch's version refuses CPU
tensors, so CPU process groups (gloo) get ``GlobalBatchNorm``: the same statistics through
differentiable all-reduces (``torch.distributed.nn``), two passes for an exact variance.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
from torch import nn


class GlobalBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics span every process of the default group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        mean = dist_nn.all_reduce(x.sum(dims)) / count
        centred = x - mean[None, :, None, None]
        var = dist_nn.all_reduce((centred * centred).sum(dims)) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of ``module`` synchronised across processes (same state-dict keys)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global(module)


def _to_global(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        converted = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        converted.load_state_dict(module.state_dict())
        converted.requires_grad_(module.weight.requires_grad)
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _to_global(child))
    return module
