"""Official architectures with seeded weights whose activations look like a trained net's.

A freshly initialised YOLOX or RTMPose shrinks its activations layer after layer (the
default init with BatchNorm's identity statistics), so its outputs are nearly constant
and say little about a conversion. Calibrating BatchNorm on random inputs (train-mode
passes, cumulative statistics) keeps every layer at unit scale, as training does.
"""

from __future__ import annotations

import torch
from torch import nn

from comfyui_dwpose.nets import build_model


def calibrate(model: nn.Module, size: tuple[int, int], seed: int = 0) -> nn.Module:
    """Set BatchNorm statistics from two random batches; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    pose = getattr(model, "kind", None) == "pose"
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            x = torch.randn(2, 3, *size, generator=generator)
            model(x if pose else (x * 60 + 110).clamp(0, 255))  # pixel-like values for YOLOX
    return model.eval()


def standin(name: str, input_size: tuple[int, int] | None = None, seed: int = 0) -> nn.Module:
    """``build_model(name, input_size)`` with seeded weights and calibrated BatchNorm, eval mode."""
    torch.manual_seed(seed)
    model = build_model(name, input_size)
    # YOLOX is fully convolutional: small images calibrate it as well, and faster.
    return calibrate(model, model.input_size if model.kind == "pose" else (128, 128), seed)
