"""CSPNeXt backbone (RTMDet / RTMPose), P5 layout, in mmdet's parameter naming."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import RTMPOSE_BN, BNConfig, ConvModule, CSPLayer, SPPBottleneck, scaled_depth

# Per stage: in_channels, out_channels, num_blocks, add_identity, use_spp (before scaling).
CSPNEXT_P5 = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, 1024, 3, False, True),
)


class CSPNeXt(nn.Module):
    """Stem of three 3x3 convs (stride 2 first), then four stride-2 CSP stages.

    Stage ``i`` is ``Sequential(downsample conv, [SPP], CSPLayer)`` so that the keys read
    ``stage4.1.conv1`` / ``stage4.2.main_conv`` exactly as in the official checkpoints.
    ``forward`` returns the outputs of the stages listed in ``out_indices``
    (0 = stem, 4 = last stage).
    """

    def __init__(
        self,
        deepen_factor: float,
        widen_factor: float,
        out_indices: Sequence[int] = (4,),
        channel_attention: bool = True,
        bn: BNConfig = RTMPOSE_BN,
    ) -> None:
        super().__init__()
        stem_out = int(CSPNEXT_P5[0][0] * widen_factor)
        self.stem = nn.Sequential(
            ConvModule(3, stem_out // 2, 3, stride=2, bn=bn),
            ConvModule(stem_out // 2, stem_out // 2, 3, bn=bn),
            ConvModule(stem_out // 2, stem_out, 3, bn=bn),
        )
        for i, (cin, cout, n, add_identity, use_spp) in enumerate(CSPNEXT_P5):
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            stage: list[nn.Module] = [ConvModule(cin, cout, 3, stride=2, bn=bn)]
            if use_spp:
                stage.append(SPPBottleneck(cout, cout, bn=bn))
            stage.append(
                CSPLayer(
                    cout,
                    cout,
                    scaled_depth(n, deepen_factor),
                    add_identity,
                    cspnext_block=True,
                    channel_attention=channel_attention,
                    bn=bn,
                )
            )
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))
        self.out_indices = tuple(out_indices)
        self.out_channels = int(CSPNEXT_P5[-1][1] * widen_factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        layers = (self.stem, self.stage1, self.stage2, self.stage3, self.stage4)
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
