"""RTMCC head of RTMPose: keypoint tokens, a gated attention unit, SimCC classifiers.

Names (``final_layer``, ``mlp.0.g``, ``gau.uv``, ``gau.res_scale.scale``, ``cls_x`` ...)
match mmpose's RTMCCHead so the official checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ScaleNorm(nn.Module):
    """x / (||x|| / sqrt(dim)) * g, with one learnt scalar ``g``; norm over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    """Learnt per-channel multiplier (the GAU's residual scale)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class GatedAttentionUnit(nn.Module):
    """Self-attention GAU (mmpose ``RTMCCBlock``) as configured in RTMPose.

    One projection gives u, v (``e`` wide each) and a shared base (``s`` wide) from which
    q and k come by per-row affine maps; attention weights are relu(q k^T / sqrt(s))^2,
    no softmax and no relative bias. Residual: ``res_scale(x) + o(u * (A v))``.
    """

    def __init__(
        self,
        dims: int = 256,
        expansion_factor: int = 2,
        s: int = 128,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.s = s
        self.e = int(dims * expansion_factor)
        self.o = nn.Linear(self.e, dims, bias=False)
        self.uv = nn.Linear(dims, 2 * self.e + s, bias=False)
        self.gamma = nn.Parameter(torch.rand(2, s))
        self.beta = nn.Parameter(torch.rand(2, s))
        self.ln = ScaleNorm(dims, eps=eps)
        self.res_scale = Scale(dims)
        self.act = nn.SiLU()
        self.sqrt_s = math.sqrt(s)
        nn.init.xavier_uniform_(self.uv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uv = self.act(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=-1)
        base = base.unsqueeze(2) * self.gamma + self.beta  # [B, K, 2, s]
        q, k = base.unbind(dim=2)
        kernel = torch.square(F.relu(torch.bmm(q, k.transpose(1, 2)) / self.sqrt_s))
        out = self.o(u * torch.bmm(kernel, v))
        return self.res_scale(x) + out


class RTMCCHead(nn.Module):
    """Feature map -> per-keypoint tokens -> GAU -> SimCC x/y logits.

    ``final_layer`` (7x7 conv) makes one channel per keypoint; each channel's flattened
    ``(H/32)*(W/32)`` map is a token, so ``mlp`` (and therefore the parameter count)
    depends on the input size. ``cls_x``/``cls_y`` output ``split_ratio`` bins per pixel.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        input_size: tuple[int, int],
        split_ratio: float = 2.0,
        hidden_dims: int = 256,
        s: int = 128,
        expansion_factor: int = 2,
        final_layer_kernel_size: int = 7,
    ) -> None:
        super().__init__()
        height, width = input_size
        if height % 32 or width % 32:
            raise ValueError(f"input size {input_size} must be a multiple of 32")
        flatten_dims = (height // 32) * (width // 32)
        self.final_layer = nn.Conv2d(
            in_channels,
            num_keypoints,
            final_layer_kernel_size,
            padding=final_layer_kernel_size // 2,
        )
        self.mlp = nn.Sequential(
            ScaleNorm(flatten_dims), nn.Linear(flatten_dims, hidden_dims, bias=False)
        )
        self.gau = GatedAttentionUnit(hidden_dims, expansion_factor, s)
        self.cls_x = nn.Linear(hidden_dims, int(width * split_ratio), bias=False)
        self.cls_y = nn.Linear(hidden_dims, int(height * split_ratio), bias=False)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.final_layer(feats[-1]).flatten(2)
        x = self.gau(self.mlp(x))
        return self.cls_x(x), self.cls_y(x)
