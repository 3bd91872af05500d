"""BatchNorm over the global batch when training in several processes.

The released configs use SyncBN: every BatchNorm (the teacher's too) normalises with the
statistics of all GPUs' samples together, so the result does not depend on how the global
batch is split. On CUDA that is torch's ``SyncBatchNorm``. torch's version refuses CPU
tensors, so CPU process groups (gloo) get ``GlobalBatchNorm``: the same statistics through
an all-reduce whose backward is an all-reduce, two passes for an exact variance.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SumOverProcesses(torch.autograd.Function):
    """Sum over processes; each process's input gradient is the sum of all output gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics span every process of the default group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        mean = _SumOverProcesses.apply(x.sum(dims)) / count
        centred = x - mean[None, :, None, None]
        var = _SumOverProcesses.apply((centred * centred).sum(dims)) / count
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
