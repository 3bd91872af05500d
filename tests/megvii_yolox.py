"""YOLOX arranged as Megvii's code arranges it, to stand in for DWPose's ``yolox_l.onnx``.

That file was exported from Megvii's YOLOX, not mmdet: the same function, but other
module names (``backbone.backbone.dark3``, ``head.stems``), CSP branches computed main
first (mmdet: short first), and the neck's 1x1 output convs run per level inside the
head (mmdet: all in the neck, before the head). Written from those facts with this
package's blocks; only the arrangement differs, which is what the converter must see
through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from comfyui_dwpose.nets.csp_darknet import Focus
from comfyui_dwpose.nets.layers import ConvModule, DarknetBottleneck, SPPBottleneck


class CSPLayer(nn.Module):
    """conv1 (main) and conv2 (short) from the input, bottlenecks on main, conv3 fuses."""

    def __init__(self, cin: int, cout: int, n: int, shortcut: bool) -> None:
        super().__init__()
        hidden = cout // 2
        self.conv1 = ConvModule(cin, hidden, 1)
        self.conv2 = ConvModule(cin, hidden, 1)
        self.conv3 = ConvModule(2 * hidden, cout, 1)
        self.m = nn.Sequential(*(DarknetBottleneck(hidden, shortcut, False) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.conv1(x)
        short = self.conv2(x)
        return self.conv3(torch.cat((self.m(main), short), 1))


class Darknet(nn.Module):
    def __init__(self, depth: float, width: float) -> None:
        super().__init__()
        base, n = int(64 * width), max(round(3 * depth), 1)
        self.stem = Focus(base)
        self.dark2 = nn.Sequential(
            ConvModule(base, base * 2, 3, 2), CSPLayer(base * 2, base * 2, n, True)
        )
        self.dark3 = nn.Sequential(
            ConvModule(base * 2, base * 4, 3, 2), CSPLayer(base * 4, base * 4, 3 * n, True)
        )
        self.dark4 = nn.Sequential(
            ConvModule(base * 4, base * 8, 3, 2), CSPLayer(base * 8, base * 8, 3 * n, True)
        )
        self.dark5 = nn.Sequential(
            ConvModule(base * 8, base * 16, 3, 2),
            SPPBottleneck(base * 16, base * 16),
            CSPLayer(base * 16, base * 16, n, False),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c3 = self.dark3(self.dark2(self.stem(x)))
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


class PAFPN(nn.Module):
    def __init__(self, depth: float, width: float) -> None:
        super().__init__()
        c3, c4, c5, n = int(256 * width), int(512 * width), int(1024 * width), round(3 * depth)
        self.backbone = Darknet(depth, width)
        self.lateral_conv0 = ConvModule(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, False)
        self.reduce_conv1 = ConvModule(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, False)
        self.bu_conv2 = ConvModule(c3, c3, 3, 2)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, False)
        self.bu_conv1 = ConvModule(c4, c4, 3, 2)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([F.interpolate(fpn_out0, scale_factor=2.0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([F.interpolate(fpn_out1, scale_factor=2.0), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


class Head(nn.Module):
    def __init__(self, width: float, num_classes: int = 80) -> None:
        super().__init__()
        feat = int(256 * width)
        channels = [int(c * width) for c in (256, 512, 1024)]

        def convs() -> nn.Sequential:
            return nn.Sequential(ConvModule(feat, feat, 3), ConvModule(feat, feat, 3))

        self.stems = nn.ModuleList(ConvModule(c, feat, 1) for c in channels)
        self.cls_convs = nn.ModuleList(convs() for _ in channels)
        self.reg_convs = nn.ModuleList(convs() for _ in channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(feat, num_classes, 1) for _ in channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(feat, 4, 1) for _ in channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(feat, 1, 1) for _ in channels)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        outputs = []
        for k, x in enumerate(feats):
            x = self.stems[k](x)
            cls_output = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            reg_output, obj_output = self.reg_preds[k](reg_feat), self.obj_preds[k](reg_feat)
            outputs.append(torch.cat([reg_output, obj_output.sigmoid(), cls_output.sigmoid()], 1))
        return torch.cat([x.flatten(start_dim=2) for x in outputs], dim=2).permute(0, 2, 1)


class MegviiYOLOX(nn.Module):
    def __init__(self, depth: float, width: float) -> None:
        super().__init__()
        self.backbone = PAFPN(depth, width)
        self.head = Head(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
