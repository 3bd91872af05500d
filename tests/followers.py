"""Stand-in models whose outputs follow the picture, for video tests and bench/video.py.

Random weights make keypoints noise, so tracking and detector skipping cannot be judged on
them. These follow coloured figures instead: the "detector" boxes each figure of a palette
colour, the "pose model" finds the figure filling its crop and spreads a whole-body template
over that figure's extent. Both implement runtime.Model; given a real model as `inner`, they
run it too (its full compute) and replace its output, so timings stay real.
"""

from __future__ import annotations

import math

import numpy as np

from comfyui_dwpose import detect, pose
from comfyui_dwpose.runtime import Model

# Figure colours (RGB), saturated so that video compression leaves them recognisable.
PALETTE = np.array([[230, 40, 40], [40, 200, 40], [50, 80, 240]])
TOLERANCE = 70  # max per-channel difference to count a pixel as a figure's
BACKGROUND = (30, 30, 30)

# Where each of the 133 keypoints sits within its figure's box, (0..1, 0..1).
_rng = np.random.default_rng(7)
TEMPLATE = np.clip(_rng.uniform(0.05, 0.95, (133, 2)), 0, 1)


def draw_figures(size, figures) -> np.ndarray:
    """An RGB frame (h, w) with figures: (colour index, x1, y1, x2, y2) filled ellipses."""
    h, w = size
    image = np.empty((h, w, 3), np.uint8)
    image[:] = BACKGROUND
    yy, xx = np.mgrid[0:h, 0:w]
    for colour, x1, y1, x2, y2 in figures:
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        inside = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
        image[inside] = PALETTE[colour]
    return image


def _masks(rgb: np.ndarray) -> np.ndarray:
    """(colours, h, w) masks of the palette colours in one (h, w, 3) image."""
    diff = np.abs(rgb[None].astype(np.int16) - PALETTE[:, None, None].astype(np.int16))
    return diff.max(axis=-1) <= TOLERANCE


def _bounds(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) < 2 or len(cols) < 2:
        return None
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


class FollowingDetector:
    """YOLOX layout [N,3,S,S] -> [N,A,85]: one confident box per palette figure in view."""

    def __init__(self, size: int = 640, inner: Model | None = None):
        self.inner = inner
        self.name = "following-detector"
        self.input_shape = (None, 3, size, size)
        grid, _ = detect.anchor_grid((size, size))
        self.anchors = len(grid)
        self.output_shapes = [(None, self.anchors, 85)]
        self.grid = grid
        self.first32 = self.anchors - (size // 32) ** 2

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_shape[2], self.input_shape[3]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.inner is not None:
            self.inner.run(batch)
        out = np.zeros((len(batch), self.anchors, 85), np.float32)
        for n, image in enumerate(batch):
            rgb = image[::-1].transpose(1, 2, 0)  # the detector is fed BGR
            for colour, mask in enumerate(_masks(rgb)):
                box = _bounds(mask)
                if box is None:
                    continue
                x1, y1, x2, y2 = box
                anchor = self.first32 + colour  # any anchor works: decode adds its cell back
                gx, gy = self.grid[anchor]
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                out[n, anchor, :4] = [
                    cx / 32 - gx, cy / 32 - gy, math.log((x2 - x1) / 32), math.log((y2 - y1) / 32)
                ]  # fmt: skip
                out[n, anchor, 4:6] = 0.95
        return [out]


class FollowingPose:
    """SimCC layout [N,3,H,W] -> simcc_x [N,133,2W], simcc_y [N,133,2H]: the template spread
    over the box of the palette figure that fills most of the crop's middle; nothing when
    no figure is there."""

    def __init__(self, size: tuple[int, int] = (256, 192), inner: Model | None = None):
        self.inner = inner
        self.name = "following-pose"
        self.input_shape = (None, 3, *size)
        self.output_shapes = [(None, 133, 2 * size[1]), (None, 133, 2 * size[0])]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_shape[2], self.input_shape[3]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.inner is not None:
            self.inner.run(batch)
        h, w = self.input_size
        bins_x, bins_y = np.arange(2 * w) / 2, np.arange(2 * h) / 2
        simcc_x = np.zeros((len(batch), 133, 2 * w), np.float32)
        simcc_y = np.zeros((len(batch), 133, 2 * h), np.float32)
        std, mean = np.array(pose.STD)[:, None, None], np.array(pose.MEAN)[:, None, None]
        for n, planes in enumerate(batch):
            rgb = np.clip(planes * std + mean, 0, 255).round().transpose(1, 2, 0)
            masks = _masks(rgb)
            # Like a top-down model, it follows the figure in the middle of its crop.
            centre = masks[:, h // 4 : h - h // 4, w // 4 : w - w // 4].sum(axis=(1, 2))
            box = _bounds(masks[int(np.argmax(centre))]) if centre.max() > 20 else None
            if box is None:
                continue
            x1, y1, x2, y2 = box
            kx = x1 + TEMPLATE[:, 0] * (x2 - x1)
            ky = y1 + TEMPLATE[:, 1] * (y2 - y1)
            simcc_x[n] = 1 - 0.05 * np.abs(bins_x[None] - kx[:, None])
            simcc_y[n] = 1 - 0.05 * np.abs(bins_y[None] - ky[:, None])
        return [simcc_x, simcc_y]


def follow(estimator, detector: Model | None = None, pose_model: Model | None = None) -> None:
    """Swap an estimator's models for followers (wrapping the given real ones, if any)."""
    estimator.detector.model = FollowingDetector(estimator.detector.model.input_size[0], detector)
    estimator.pose.model = FollowingPose(estimator.pose.model.input_size, pose_model)
