"""Person detection with YOLOX (DWPose's `yolox_l.onnx` layout), exactly as upstream.

Letterbox onto a 114-grey canvas, decode the anchor-free grid, score = objectness ×
class score, greedy NMS with the legacy +1 pixel areas. Only the person class is kept,
and NMS is class-aware, so only the person scores need to go through it.

Optionally the canvas is fitted to the frame (`fitted_size`): same scale, same image
pixels, only the grey padding shrinks to the next multiple of 32, so a 16:9 frame runs
YOLOX at 640x384 instead of 640x640. That needs a model that takes any input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .runtime import Model, ModelLoadError

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


def fitted_size(shape: tuple[int, int], base: tuple[int, int]) -> tuple[int, int]:
    """The smallest canvas (h, w), sides multiples of 32, that holds an (h, w) frame
    letterboxed at the scale it gets on the `base` canvas.

    The side that limits the scale keeps its base length; the other is rounded up from the
    exact (integer) scaled length. So letterboxing onto this size picks the same ratio, to
    the bit, and the same resized pixels: the canvas is the base one with its padding cut.
    """
    h, w = shape
    base_h, base_w = base
    if base_w * h <= base_h * w:  # the width limits the scale: ratio = base_w / w
        return _round_up(-(-h * base_w // w)), base_w
    return base_h, _round_up(-(-w * base_h // h))


def _round_up(length: int) -> int:
    return -(-length // STRIDES[-1]) * STRIDES[-1]


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
    (what the ControlNet app and ComfyUI feed it today). `fit_input` letterboxes each frame
    onto its `fitted_size` instead of the model's full input size (less padding to compute);
    it needs a model that takes any size (`dynamic_size`: the torch backend, or an ONNX
    file exported with dynamic height and width).
    """

    model: Model
    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    channels: str = "bgr"
    fit_input: bool = False

    def __post_init__(self) -> None:
        if self.channels not in ("bgr", "rgb"):
            raise ValueError(f"detector channels must be 'bgr' or 'rgb', got {self.channels!r}")
        if self.model.input_size is None:
            raise ValueError("the detector model must have a fixed input size (e.g. 640x640)")
        if self.fit_input and not getattr(self.model, "dynamic_size", False):
            h, w = self.model.input_size
            name = self.model.name
            raise ModelLoadError(
                f"{name} takes only {h}x{w} images, so its input cannot be fitted to the frame: "
                f"run it on the torch backend (backend='torch', `--backend torch`), or export it "
                f"with dynamic height and width (`dwpose convert {name} -o "
                f"{name.removesuffix('.onnx')}_dynamic.onnx --dynamic-size`)"
            )

    def input_size_for(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The detector input size (h, w) for a frame of `shape` (h, w)."""
        if self.fit_input:
            return fitted_size(shape, self.model.input_size)
        return self.model.input_size

    def __call__(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Person boxes (M,4) float64 x1y1x2y2 and scores (M,) float32 for each RGB image.

        Frames go to the model in one batch per input size (one batch unless fitted
        frames differ in shape).
        """
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(self.input_size_for(image.shape[:2]), []).append(i)
        results: list = [None] * len(images)
        for size, members in groups.items():
            batch, ratios = [], []
            for i in members:
                canvas, ratio = letterbox(images[i], size)
                if self.channels == "bgr":
                    canvas = canvas[:, :, ::-1]
                batch.append(canvas.transpose(2, 0, 1))
                ratios.append(ratio)
            outputs = self.model.run(np.stack(batch).astype(np.float32))[0]
            for i, out, ratio in zip(members, outputs, ratios):
                results[i] = self._boxes(out, size, ratio)
        return results

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
