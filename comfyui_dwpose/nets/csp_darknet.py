"""CSPDarknet backbone of YOLOX (Focus stem), P5 layout, in mmdet's parameter naming."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import YOLOX_BN, BNConfig, ConvModule, CSPLayer, SPPBottleneck, conv3x3, scaled_depth

# Per stage: in_channels, out_channels, num_blocks, add_identity, use_spp (before scaling).
CSPDARKNET_P5 = (
    (64, 128, 3, True, False),
    (128, 256, 9, True, False),
    (256, 512, 9, True, False),
    (512, 1024, 3, False, True),
)


class Focus(nn.Module):
    """Space-to-depth (2x2 pixels -> 4x channels), then a 3x3 ConvModule.

    Channel order of the rearrangement is (top-left, bottom-left, top-right,
    bottom-right), which the stem's first conv weights depend on.
    """

    def __init__(self, out_channels: int, bn: BNConfig = YOLOX_BN) -> None:
        super().__init__()
        self.conv = ConvModule(12, out_channels, 3, bn=bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat(
            (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1
        )
        return self.conv(x)


class CSPDarknet(nn.Module):
    """Focus stem then four stride-2 CSP stages; returns the stages in ``out_indices``.

    ``depthwise`` switches every 3x3 conv to depthwise-separable (YOLOX-nano).
    """

    def __init__(
        self,
        deepen_factor: float,
        widen_factor: float,
        depthwise: bool = False,
        out_indices: Sequence[int] = (2, 3, 4),
        bn: BNConfig = YOLOX_BN,
    ) -> None:
        super().__init__()
        self.stem = Focus(int(CSPDARKNET_P5[0][0] * widen_factor), bn=bn)
        self.out_channels: list[int] = []
        for i, (cin, cout, n, add_identity, use_spp) in enumerate(CSPDARKNET_P5):
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            stage: list[nn.Module] = [conv3x3(cin, cout, 2, depthwise, bn)]
            if use_spp:
                stage.append(SPPBottleneck(cout, cout, bn=bn))
            stage.append(
                CSPLayer(cout, cout, scaled_depth(n, deepen_factor), add_identity, depthwise, bn=bn)
            )
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))
            if i + 1 in out_indices:
                self.out_channels.append(cout)
        self.out_indices = tuple(out_indices)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        layers = (self.stem, self.stage1, self.stage2, self.stage3, self.stage4)
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
