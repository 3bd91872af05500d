"""Optimiser and learning-rate schedule of the RTMPose / DWPose configs.

AdamW with weight decay on weights only: mmengine's ``norm_decay_mult=0,
bias_decay_mult=0`` exempts every parameter of a normalisation layer and every other
parameter named ``bias``. The learning rate warms up linearly from 1e-5x over the first
1000 iterations (mmengine ``LinearLR``: factor ``s + (1 - s) * i / 999`` at iteration i),
then follows a cosine from ``cosine_begin`` to ``cosine_end`` (epochs, converted to
iterations) down to ``min_lr_ratio`` x the peak. Iteration i uses ``lr_factor(i)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """The learning-rate factor per iteration (multiply the peak learning rate by it)."""

    iters_per_epoch: int
    cosine_begin: int  # epoch
    cosine_end: int  # epoch
    warmup_iters: int = 1000
    warmup_start: float = 1e-5
    min_lr_ratio: float = 0.05

    def __call__(self, iteration: int) -> float:
        factor = 1.0
        if self.warmup_iters > 1:
            progress = min(iteration, self.warmup_iters - 1) / (self.warmup_iters - 1)
            factor = self.warmup_start + (1 - self.warmup_start) * progress
        begin = self.cosine_begin * self.iters_per_epoch
        length = (self.cosine_end - self.cosine_begin) * self.iters_per_epoch
        if iteration >= begin and length > 0:
            step = min(iteration - begin, length)
            cosine = (1 + math.cos(math.pi * step / length)) / 2
            factor *= self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine
        return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: decayed weights, and norms and biases without decay."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, NORM_LAYERS) or name == "bias":
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, schedule: Schedule
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (torch defaults otherwise, as mmengine's) and its per-iteration scheduler."""
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
