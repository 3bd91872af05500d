"""Top-down whole-body pose with a SimCC model (RTMPose / DWPose layout), exactly as upstream.

Each box becomes a crop (centre, size ×1.25, widened to the model's aspect ratio, no
rotation), normalised with ImageNet statistics, decoded by argmax over SimCC bins and
mapped back to image pixels. Unlike upstream, all crops go through the model in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .runtime import Model

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
BOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0

# Upstream normalises in float64 and casts to float32; for uint8 pixels that is a table.
_NORMALIZE = ((np.arange(256, dtype=np.float64)[:, None] - MEAN) / STD).astype(np.float32).T.copy()


def box_center_scale(
    boxes: np.ndarray, input_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Crop centres (N,2) and sizes (N,2) for boxes (N,4), padded and fitted to the input's aspect."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    center = np.stack([x1 + x2, y1 + y2], axis=1) * 0.5
    w, h = (x2 - x1) * BOX_PADDING, (y2 - y1) * BOX_PADDING
    aspect = input_size[1] / input_size[0]
    wider = w > h * aspect
    scale = np.stack([np.where(wider, w, h * aspect), np.where(wider, w / aspect, h)], axis=1)
    return center, scale


def crop_matrix(center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine map from image to crop, built from three point pairs as upstream does
    (float32 points through cv2.getAffineTransform), so the warp is bit-identical."""
    h, w = input_size
    src = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, scale[0] * -0.5])
    src[2] = _third_point(src[0], src[1])
    dst = np.zeros((3, 2), np.float32)
    dst[0] = [w * 0.5, h * 0.5]
    dst[1] = np.array([w * 0.5, h * 0.5]) + np.array([0.0, w * -0.5])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.r_[-d[1], d[0]]


def crop(
    image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]
) -> np.ndarray:
    """One (h, w, 3) uint8 crop; outside the image is black."""
    matrix = crop_matrix(center, scale, input_size)
    return cv2.warpAffine(image, matrix, (input_size[1], input_size[0]), flags=cv2.INTER_LINEAR)


def normalize(crops: np.ndarray) -> np.ndarray:
    """(N,h,w,3) uint8 RGB crops into the model's (N,3,h,w) float32 input."""
    planes = crops.transpose(0, 3, 1, 2)
    out = np.empty(planes.shape, np.float32)
    for c in range(3):
        np.take(_NORMALIZE[c], planes[:, c], out=out[:, c])
    return out


def decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop-pixel locations (N,K,2) float32 and scores (N,K) from SimCC logits.

    Score = min of the two axis maxima (raw, not a probability); locations are -1 (before
    the split ratio) where the score is not positive.
    """
    locs = np.stack([simcc_x.argmax(axis=2), simcc_y.argmax(axis=2)], axis=-1).astype(np.float32)
    max_x, max_y = simcc_x.max(axis=2), simcc_y.max(axis=2)
    scores = np.where(max_x > max_y, max_y, max_x)
    locs[scores <= 0.0] = -1
    return locs / SIMCC_SPLIT_RATIO, scores


def to_image(
    locs: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]
) -> np.ndarray:
    """Map crop locations (N,K,2) back to image pixels, float64, in upstream's operation order."""
    size = np.array([input_size[1], input_size[0]])
    return locs / size * scale[:, None] + center[:, None] - scale[:, None] / 2


@dataclass
class PoseModel:
    """Runs a SimCC pose model over boxes of many images, in batches of `batch_size` crops."""

    model: Model
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.model.input_size is None:
            raise ValueError("the pose model must have a fixed input size (e.g. 384x288)")

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_size

    def __call__(
        self, images: list[np.ndarray], boxes: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keypoints (M,K,2) float64 pixels and scores (M,K) float32 for the M boxes of each image."""
        owner = np.concatenate([np.full(len(b), i) for i, b in enumerate(boxes)]).astype(int)
        all_boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes])
        center, scale = box_center_scale(all_boxes, self.input_size)
        keypoints, scores = [], []
        for start in range(0, len(all_boxes), self.batch_size):
            part = slice(start, start + self.batch_size)
            crops = np.stack([
                crop(images[i], c, s, self.input_size)
                for i, c, s in zip(owner[part], center[part], scale[part])
            ])  # fmt: skip
            simcc_x, simcc_y = self.model.run(normalize(crops))[:2]
            locs, sc = decode(simcc_x, simcc_y)
            keypoints.append(to_image(locs, center[part], scale[part], self.input_size))
            scores.append(sc.astype(np.float32))
        if not keypoints:
            k = self.model.output_shapes[0][1]
            return [(np.zeros((0, k, 2)), np.zeros((0, k), np.float32)) for _ in images]
        keypoints, scores = np.concatenate(keypoints), np.concatenate(scores)
        return [(keypoints[owner == i], scores[owner == i]) for i in range(len(images))]
