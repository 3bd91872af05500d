"""A hand-built YOLOX stand-in whose outputs depend only on the image near each anchor.

Random YOLOX weights give degenerate boxes, so they cannot show that a fitted detector
input (detect.fitted_size) finds the same boxes as the 640x640 letterbox. This network
can. Per level, each anchor cell's grey range (max - min), smoothed over its 3x3
neighbour cells, gives the objectness, its darkness the person score, its brightness the
size of a tall box centred on the cell. Flat grey padding has a range of exactly 0, as the
smoothing's zero padding has, so fitted and letterboxed inputs give the same numbers in
every cell they share: a box that differs is a coordinate bug. It has YOLOX's signature
([N,3,H,W], 0-255 -> [N,A,85]) and exports to ONNX with dynamic sizes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SLOPE, CONTRAST = 30, 0.75  # objectness = sigmoid(SLOPE * (smoothed range - CONTRAST))


class LocalDetector(nn.Module):
    """YOLOX layout, outputs local to each cell and its neighbours (see the module doc)."""

    kind = "det"
    strides = (8, 16, 32)
    num_classes = 80

    def __init__(self, input_size: tuple[int, int] = (640, 640)) -> None:
        super().__init__()
        self.input_size = input_size
        self.smooth = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.smooth.weight.fill_(1 / 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(1, keepdim=True) / 255
        levels = []
        for stride in self.strides:
            mean = F.avg_pool2d(grey, stride)
            contrast = self.smooth(F.max_pool2d(grey, stride) + F.max_pool2d(-grey, stride))
            centre = torch.full_like(mean, 0.5)
            log_w = mean + (math.log(4.0) - 0.5)  # 4 cells wide at mid grey
            log_h = log_w + 0.6  # people are taller than wide
            objectness = torch.sigmoid(SLOPE * (contrast - CONTRAST))
            person = torch.sigmoid(8 * (0.6 - mean))
            others = torch.zeros_like(mean).expand(-1, self.num_classes - 1, -1, -1)
            level = torch.cat([centre, centre, log_w, log_h, objectness, person, others], 1)
            levels.append(level.flatten(2))
        return torch.cat(levels, 2).permute(0, 2, 1)
