"""Person detection with YOLOX (DWPose's `yolox_l.onnx` layout), exactly as upstream.

Letterbox onto a 114-grey canvas, decode the anchor-free grid, score = objectness ×
class score, greedy NMS with the legacy +1 pixel areas. Only the person class is kept,
and NMS is class-aware, so only the person scores need to go through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .runtime import Model

STRIDES = (8, 16, 32)
PAD_VALUE = 114
CANDIDATE_SCORE = 0.1  # pre-NMS cut, fixed upstream
PERSON = 0


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize `image` (HxWx3 uint8) to fit `size` (h, w), paste it top-left on grey.

    Returns the (h, w, 3) uint8 canvas and the scale ratio applied.
    """
    h, w = image.shape[:2]
    ratio = min(size[0] / h, size[1] / w)
    new_w, new_h = max(1, int(w * ratio)), max(1, int(h * ratio))
    canvas = np.full((size[0], size[1], 3), PAD_VALUE, np.uint8)
    resized = (
        image
        if (new_w, new_h) == (w, h)
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    canvas[:new_h, :new_w] = resized
    return canvas, ratio


def anchor_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell offsets (A,2) and strides (A,1) of every anchor, levels in stride order."""
    grids, strides = [], []
    for stride in STRIDES:
        hs, ws = size[0] // stride, size[1] // stride
        xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((hs * ws, 1), stride))
    return np.concatenate(grids), np.concatenate(strides)


def decode(
    output: np.ndarray, size: tuple[int, int], ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (A,4) x1y1x2y2 in image pixels and person scores (A,) from one output [A,85].

    The arithmetic mirrors upstream step by step (float32 storage, float64 intermediates)
    so that boxes agree to the bit.
    """
    grid, stride = anchor_grid(size)
    pred = output.astype(np.float32, copy=True)
    pred[:, :2] = (pred[:, :2] + grid) * stride
    pred[:, 2:4] = np.exp(pred[:, 2:4]) * stride
    boxes = np.empty((len(pred), 4), np.float32)
    boxes[:, 0] = pred[:, 0] - pred[:, 2] / 2.0
    boxes[:, 1] = pred[:, 1] - pred[:, 3] / 2.0
    boxes[:, 2] = pred[:, 0] + pred[:, 2] / 2.0
    boxes[:, 3] = pred[:, 1] + pred[:, 3] / 2.0
    boxes /= ratio
    return boxes, pred[:, 4] * pred[:, 5 + PERSON]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS, highest score first; areas use the legacy +1 pixel convention."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return keep


@dataclass
class Detector:
    """A YOLOX person detector.

    `channels` is the order the model is fed: "bgr" (what YOLOX was trained on) or "rgb"
    (what the ControlNet app and ComfyUI feed it today).
    """

    model: Model
    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    channels: str = "bgr"

    def __post_init__(self) -> None:
        if self.channels not in ("bgr", "rgb"):
            raise ValueError(f"detector channels must be 'bgr' or 'rgb', got {self.channels!r}")
        if self.model.input_size is None:
            raise ValueError("the detector model must have a fixed input size (e.g. 640x640)")

    def __call__(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Person boxes (M,4) float64 x1y1x2y2 and scores (M,) float32 for each RGB image."""
        size = self.model.input_size
        batch, ratios = [], []
        for image in images:
            canvas, ratio = letterbox(image, size)
            if self.channels == "bgr":
                canvas = canvas[:, :, ::-1]
            batch.append(canvas.transpose(2, 0, 1))
            ratios.append(ratio)
        outputs = self.model.run(np.stack(batch).astype(np.float32))[0]
        return [self._boxes(out, size, ratio) for out, ratio in zip(outputs, ratios)]

    def _boxes(
        self, output: np.ndarray, size: tuple[int, int], ratio: float
    ) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = decode(output, size, ratio)
        candidates = scores > CANDIDATE_SCORE
        boxes, scores = boxes[candidates], scores[candidates]
        keep = nms(boxes, scores, self.iou_threshold)
        boxes, scores = boxes[keep], scores[keep]
        final = scores.astype(np.float64) > self.score_threshold  # upstream compares in float64
        return boxes[final].astype(np.float64), scores[final]
