"""YOLOX detector (CSPDarknet + PAFPN + decoupled head) in mmdet's parameter naming.

``forward`` gives the layout of Megvii's ONNX export that DWPose ships (``yolox_l.onnx``):
``[N, A, 4 + 1 + num_classes]`` with raw box values (dx, dy, log w, log h), then the
sigmoid objectness and sigmoid class scores; levels (strides 8, 16, 32) concatenated,
row-major within a level. Grid/stride decoding is left to the caller, as there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .csp_darknet import CSPDarknet
from .layers import YOLOX_BN, BNConfig, ConvModule, CSPLayer, conv3x3

LevelOutputs = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


class YOLOXPAFPN(nn.Module):
    """Path aggregation neck: top-down (reduce, upsample, CSP), bottom-up (downsample, CSP),
    then a 1x1 ``out_convs`` per level to the head width."""

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_csp_blocks: int,
        depthwise: bool = False,
        bn: BNConfig = YOLOX_BN,
    ) -> None:
        super().__init__()
        c = list(in_channels)
        n = len(c)
        self.reduce_layers = nn.ModuleList()
        self.top_down_blocks = nn.ModuleList()
        for idx in range(n - 1, 0, -1):
            self.reduce_layers.append(ConvModule(c[idx], c[idx - 1], 1, bn=bn))
            self.top_down_blocks.append(
                CSPLayer(c[idx - 1] * 2, c[idx - 1], num_csp_blocks, False, depthwise, bn=bn)
            )
        self.downsamples = nn.ModuleList()
        self.bottom_up_blocks = nn.ModuleList()
        for idx in range(n - 1):
            self.downsamples.append(conv3x3(c[idx], c[idx], 2, depthwise, bn))
            self.bottom_up_blocks.append(
                CSPLayer(c[idx] * 2, c[idx + 1], num_csp_blocks, False, depthwise, bn=bn)
            )
        self.out_convs = nn.ModuleList(ConvModule(ch, out_channels, 1, bn=bn) for ch in c)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        n = len(inputs)
        # Top-down: the coarsest map is reduced, upsampled and fused with the next finer.
        inner = [inputs[-1]]
        for i, idx in enumerate(range(n - 1, 0, -1)):
            high = self.reduce_layers[i](inner[0])
            inner[0] = high
            up = F.interpolate(high, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.top_down_blocks[i](torch.cat([up, inputs[idx - 1]], 1)))
        # Bottom-up: downsample and fuse with the top-down map of the next coarser level.
        outs = [inner[0]]
        for idx in range(n - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], 1)))
        return tuple(conv(x) for conv, x in zip(self.out_convs, outs, strict=True))


class YOLOXHead(nn.Module):
    """Decoupled head, unshared per level: cls branch (2 convs -> classes) and reg branch
    (2 convs -> 4 box values and 1 objectness)."""

    def __init__(
        self,
        in_channels: int,
        feat_channels: int,
        num_classes: int = 80,
        num_levels: int = 3,
        stacked_convs: int = 2,
        depthwise: bool = False,
        bn: BNConfig = YOLOX_BN,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes

        def stacked() -> nn.Sequential:
            return nn.Sequential(
                *(
                    conv3x3(
                        in_channels if i == 0 else feat_channels, feat_channels, 1, depthwise, bn
                    )
                    for i in range(stacked_convs)
                )
            )

        self.multi_level_cls_convs = nn.ModuleList(stacked() for _ in range(num_levels))
        self.multi_level_reg_convs = nn.ModuleList(stacked() for _ in range(num_levels))
        self.multi_level_conv_cls = nn.ModuleList(
            nn.Conv2d(feat_channels, num_classes, 1) for _ in range(num_levels)
        )
        self.multi_level_conv_reg = nn.ModuleList(
            nn.Conv2d(feat_channels, 4, 1) for _ in range(num_levels)
        )
        self.multi_level_conv_obj = nn.ModuleList(
            nn.Conv2d(feat_channels, 1, 1) for _ in range(num_levels)
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> LevelOutputs:
        """Per-level raw logits: (cls_scores, bbox_preds, objectnesses), NCHW each."""
        cls_scores, bbox_preds, objectnesses = [], [], []
        for i, x in enumerate(feats):
            cls_feat = self.multi_level_cls_convs[i](x)
            reg_feat = self.multi_level_reg_convs[i](x)
            cls_scores.append(self.multi_level_conv_cls[i](cls_feat))
            bbox_preds.append(self.multi_level_conv_reg[i](reg_feat))
            objectnesses.append(self.multi_level_conv_obj[i](reg_feat))
        return cls_scores, bbox_preds, objectnesses


def megvii_flatten(
    cls_scores: Sequence[torch.Tensor],
    bbox_preds: Sequence[torch.Tensor],
    objectnesses: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Per-level raw outputs -> ``[N, A, 4 + 1 + C]`` (box raw, sigmoid obj, sigmoid cls)."""
    levels = [
        torch.cat([box, obj.sigmoid(), cls.sigmoid()], dim=1).flatten(2)
        for cls, box, obj in zip(cls_scores, bbox_preds, objectnesses, strict=True)
    ]
    return torch.cat(levels, dim=2).permute(0, 2, 1)


class YOLOX(nn.Module):
    """YOLOX detector; input ``[N, 3, H, W]`` with 0-255 pixel values (no normalisation),
    H and W multiples of 32."""

    kind = "det"
    strides = (8, 16, 32)

    def __init__(
        self,
        deepen_factor: float,
        widen_factor: float,
        depthwise: bool = False,
        num_classes: int = 80,
        input_size: tuple[int, int] = (640, 640),
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = num_classes
        self.backbone = CSPDarknet(deepen_factor, widen_factor, depthwise)
        width = int(256 * widen_factor)
        self.neck = YOLOXPAFPN(
            self.backbone.out_channels,
            width,
            num_csp_blocks=round(3 * deepen_factor),
            depthwise=depthwise,
        )
        self.bbox_head = YOLOXHead(width, width, num_classes, depthwise=depthwise)

    def forward_levels(self, x: torch.Tensor) -> LevelOutputs:
        """Raw per-level logits (mmdet's ``YOLOX._forward``): cls, bbox, objectness."""
        return self.bbox_head(self.neck(self.backbone(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return megvii_flatten(*self.forward_levels(x))
