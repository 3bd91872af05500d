"""RTMPose top-down pose model (also DWPose's architecture): CSPNeXt + RTMCC head."""

from __future__ import annotations

import torch
from torch import nn

from .cspnext import CSPNeXt
from .rtmcc_head import RTMCCHead


class RTMPose(nn.Module):
    """``forward(x) -> (simcc_x, simcc_y)`` for a normalised crop ``x [N, 3, H, W]``.

    The input is the crop after mmpose's normalisation (RGB, ImageNet mean/std in 0-255
    units), as in the official ONNX exports. Outputs are SimCC logits
    ``[N, K, W * split_ratio]`` and ``[N, K, H * split_ratio]``.
    """

    kind = "pose"

    def __init__(
        self,
        deepen_factor: float,
        widen_factor: float,
        input_size: tuple[int, int] = (256, 192),
        num_keypoints: int = 133,
        split_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_keypoints = num_keypoints
        self.split_ratio = split_ratio
        self.backbone = CSPNeXt(deepen_factor, widen_factor, out_indices=(4,))
        self.head = RTMCCHead(
            self.backbone.out_channels, num_keypoints, self.input_size, split_ratio
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.backbone(x))
