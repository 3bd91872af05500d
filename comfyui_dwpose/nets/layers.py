"""Convolution building blocks shared by CSPNeXt (RTMPose) and CSPDarknet (YOLOX).

Module and attribute names follow mmcv/mmdet (``conv``, ``bn``, ``depthwise_conv``,
``main_conv``, ...) because the state-dict keys of the official checkpoints are built from
them; a renamed attribute would break ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BNConfig:
    """BatchNorm settings; they differ between the official model families.

    mmdet's YOLOX/CSPNeXt default is ``eps=1e-3, momentum=0.03``; the RTMPose configs
    override it with plain (Sync)BN, ``eps=1e-5, momentum=0.1``. ``eps`` changes the
    inference numbers, ``momentum`` only matters when training.
    """

    eps: float = 1e-3
    momentum: float = 0.03


YOLOX_BN = BNConfig(eps=1e-3, momentum=0.03)
RTMPOSE_BN = BNConfig(eps=1e-5, momentum=0.1)


class ConvModule(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU, as mmcv's ConvModule with a norm layer.

    SiLU and mmcv's ``Swish`` are the same function (``x * sigmoid(x)``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bn: BNConfig = YOLOX_BN,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn.eps, momentum=bn.momentum)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise kxk ConvModule then pointwise 1x1 ConvModule, both with BN and SiLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bn: BNConfig = YOLOX_BN,
    ) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(
            in_channels, in_channels, kernel_size, stride, groups=in_channels, bn=bn
        )
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, bn=bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


def conv3x3(
    in_channels: int, out_channels: int, stride: int, depthwise: bool, bn: BNConfig
) -> nn.Module:
    """A 3x3 conv block, depthwise-separable in the light models (YOLOX-nano)."""
    if depthwise:
        return DepthwiseSeparableConv(in_channels, out_channels, 3, stride, bn=bn)
    return ConvModule(in_channels, out_channels, 3, stride, bn=bn)


class ChannelAttention(nn.Module):
    """Squeeze-excite style gate of CSPNeXt: global average -> 1x1 conv -> hard sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(self.pool(x)))


class DarknetBottleneck(nn.Module):
    """YOLOX bottleneck: 1x1 conv, 3x3 conv, optional identity shortcut."""

    def __init__(
        self, channels: int, add_identity: bool, depthwise: bool, bn: BNConfig = YOLOX_BN
    ) -> None:
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 1, bn=bn)
        self.conv2 = conv3x3(channels, channels, 1, depthwise, bn)
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPNeXtBlock(nn.Module):
    """CSPNeXt bottleneck: 3x3 conv, then a large-kernel (5x5) depthwise-separable conv."""

    def __init__(
        self,
        channels: int,
        add_identity: bool,
        depthwise: bool,
        bn: BNConfig,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels, 1, depthwise, bn)
        self.conv2 = DepthwiseSeparableConv(channels, channels, kernel_size, 1, bn=bn)
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    """Cross Stage Partial layer: two 1x1 branches, blocks on the main one, 1x1 fusion.

    The concatenation order is (main, short); CSPNeXt gates the concatenation with
    channel attention before the final conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int,
        add_identity: bool,
        depthwise: bool = False,
        cspnext_block: bool = False,
        channel_attention: bool = False,
        expand_ratio: float = 0.5,
        bn: BNConfig = YOLOX_BN,
    ) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvModule(in_channels, mid, 1, bn=bn)
        self.short_conv = ConvModule(in_channels, mid, 1, bn=bn)
        self.final_conv = ConvModule(2 * mid, out_channels, 1, bn=bn)
        if cspnext_block:
            blocks = [CSPNeXtBlock(mid, add_identity, depthwise, bn) for _ in range(num_blocks)]
        else:
            blocks = [
                DarknetBottleneck(mid, add_identity, depthwise, bn) for _ in range(num_blocks)
            ]
        self.blocks = nn.Sequential(*blocks)
        self.attention = ChannelAttention(2 * mid) if channel_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.short_conv(x)
        main = self.blocks(self.main_conv(x))
        out = torch.cat((main, short), dim=1)
        if self.attention is not None:
            out = self.attention(out)
        return self.final_conv(out)


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: 1x1 reduce, parallel max pools (5, 9, 13), 1x1 fuse."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int] = (5, 9, 13),
        bn: BNConfig = YOLOX_BN,
    ) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv1 = ConvModule(in_channels, mid, 1, bn=bn)
        self.poolings = nn.ModuleList(
            nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes
        )
        self.conv2 = ConvModule(mid * (len(kernel_sizes) + 1), out_channels, 1, bn=bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = torch.cat([x] + [pool(x) for pool in self.poolings], dim=1)
        return self.conv2(x)


def scaled_depth(num_blocks: int, deepen_factor: float) -> int:
    """Blocks per stage after depth scaling, as the official builders round it."""
    return max(round(num_blocks * deepen_factor), 1)
