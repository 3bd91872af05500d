"""Exponential moving average of the distiller, as the RTMPose configs' EMA hook keeps it.

mmpose's ``ExpMomentumEMA`` with ``update_buffers=True``: after every iteration the average
of every state-dict entry is updated (BatchNorm statistics too, the teacher's included);
the first update copies, update ``t`` (from 1) moves floating-point entries by
``m = (1 - momentum) * exp(-(1 + t) / gamma) + momentum`` as ``avg * (1 - m) + value * m``;
integer entries (BatchNorm step counters) keep their first copy. The averaged weights are
the ones evaluated and deployed.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, momentum: float = 2e-4, gamma: float = 2000) -> None:
        self.momentum = momentum
        self.gamma = gamma
        self.steps = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = model.state_dict()
        if self.steps == 0:
            for name, avg in self.state.items():
                avg.copy_(source[name])
        else:
            m = (1 - self.momentum) * math.exp(-(1 + self.steps) / self.gamma) + self.momentum
            for name, avg in self.state.items():
                if avg.is_floating_point():
                    avg.mul_(1 - m).add_(source[name], alpha=m)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": self.state}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = int(saved["steps"])
        for name, avg in self.state.items():
            avg.copy_(saved["state"][name])
