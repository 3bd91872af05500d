"""Top-down training augmentation, as mmpose 1.3.2 runs it for RTMPose and DWPose.

Geometric part, equal to mmpose's: box -> centre and size (padding 1.25), random flip with
the left/right swap, half-body, random shift/scale/rotation of the box, the box widened to
the input's aspect ratio, then one affine warp built as `get_warp_matrix` builds it. The
photometric part follows the same configs: YOLOX's HSV jitter, then Blur, MedianBlur and
CoarseDropout with albumentations 1.x's parameters, written with OpenCV here
(docs/training-data.md says why).

Every random draw comes from the numpy Generator the caller passes, so a sample is a pure
function of its generator's seed: the loop seeds it per (seed, epoch, index) and resumes
exactly. The flip is folded into the warp matrix (one warp, no flipped copy of the image);
`matrix` maps the original image to the crop for pixels and keypoints alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .. import schema

BOX_PADDING = 1.25  # mmpose GetBBoxCenterScale, as in inference (pose.py)
FLIP_INDICES = np.array(schema.FLIP_INDICES)
FINAL_EPOCHS = 30  # mmpose's PipelineSwitchHook: the milder pipeline for the last 30 epochs


@dataclass(frozen=True)
class Augment:
    """One training pipeline's random parameters; defaults are RTMPose's COCO-WholeBody ones.

    Names follow mmpose's transforms: RandomFlip, RandomHalfBody, RandomBBoxTransform,
    YOLOXHSVRandomAug and the Albumentation list (Blur, MedianBlur, CoarseDropout).
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_total: int = 9  # visible points (of all 133) needed to try a half body
    half_body_min_upper: int = 2
    half_body_min_lower: int = 3
    half_body_padding: float = 1.5
    half_body_upper_prob: float = 0.7  # prefer the upper half when both qualify
    shift_factor: float = 0.16  # shift by up to this fraction of the box size ...
    shift_prob: float = 0.3
    scale_range: tuple[float, float] = (0.6, 1.4)
    scale_prob: float = 1.0
    rotate_factor: float = 80.0  # degrees; truncated normal in [-f, f]
    rotate_prob: float = 0.6
    hsv_deltas: tuple[int, int, int] = (5, 30, 30)  # hue (OpenCV's 0-179), saturation, value
    blur_prob: float = 0.1
    median_blur_prob: float = 0.1
    blur_kernels: tuple[int, ...] = (3, 5, 7)  # albumentations' blur_limit=7
    dropout_prob: float = 1.0
    dropout_size: tuple[float, float] = (0.2, 0.4)  # one hole, this fraction of h and of w


# The released configs (mmpose configs/wholebody_2d_keypoint/rtmpose and dwpose): each pair
# is (main pipeline, pipeline of the last FINAL_EPOCHS epochs).
COCO_WHOLEBODY = Augment()
COCO_WHOLEBODY_FINAL = replace(
    COCO_WHOLEBODY, shift_factor=0.0, scale_range=(0.75, 1.25), rotate_factor=60.0, dropout_prob=0.5
)
# COCO + UBody (DWPose's released models) and RTMPose-x on COCO-WholeBody.
COCO_UBODY = replace(COCO_WHOLEBODY, scale_range=(0.5, 1.5), rotate_factor=90.0)
COCO_UBODY_FINAL = replace(COCO_UBODY, shift_factor=0.0, dropout_prob=0.5)
PRESETS = {
    "coco-wholebody": (COCO_WHOLEBODY, COCO_WHOLEBODY_FINAL),
    "coco-ubody": (COCO_UBODY, COCO_UBODY_FINAL),
}


@dataclass
class Crop:
    """Where one sample's crop comes from.

    `center`, `scale` (w, h, already at the input's aspect ratio) and `rotation` (degrees)
    describe the crop in the image the warp reads (mirrored when `flip`), as mmpose's
    input_center / input_scale; `matrix` maps original-image pixels to crop pixels.
    """

    center: np.ndarray
    scale: np.ndarray
    rotation: float
    flip: bool
    matrix: np.ndarray


def box_center_scale(
    box: np.ndarray, padding: float = BOX_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and padded size (w, h) of an xyxy box."""
    box = np.asarray(box, np.float32)
    return (box[:2] + box[2:]) * np.float32(0.5), (box[2:] - box[:2]) * np.float32(padding)


def fix_aspect_ratio(scale: np.ndarray, aspect: float) -> np.ndarray:
    """Grow the short side of (w, h) so that w / h == aspect (TopdownAffine)."""
    w, h = scale
    return np.array([w, w / aspect] if w > h * aspect else [h * aspect, h], np.float32)


def warp_matrix(
    center: np.ndarray, scale: np.ndarray, rotation: float, output_size: tuple[int, int]
) -> np.ndarray:
    """The 2x3 image -> crop affine of mmpose's `get_warp_matrix` (no shift, fixed aspect).

    A similarity: the crop centre is `center`, the crop width covers `scale[0]` pixels, and
    the box turned by `rotation` degrees lies upright in the crop. Built, like mmpose, from
    three float32 point pairs through cv2.getAffineTransform, so the numbers agree to the bit.
    """
    out_w, out_h = output_size
    angle = np.deg2rad(rotation)
    sn, cs = np.sin(angle), np.cos(angle)
    half = -0.5 * scale[0]
    src = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([cs * half, sn * half])
    src[2] = _third_point(src[0], src[1])
    dst = np.zeros((3, 2), np.float32)
    dst[0] = [out_w * 0.5, out_h * 0.5]
    dst[1] = dst[0] + np.array([out_w * -0.5, 0.0])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b plus (a - b) turned by 90 degrees: fixes the affine to a similarity."""
    d = a - b
    return b + np.array([-d[1], d[0]], np.float32)


def flip_matrix(width: int) -> np.ndarray:
    """The 2x3 horizontal mirror of an image `width` pixels wide: x -> width - 1 - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine `outer` after `inner`."""
    return outer[:, :2] @ inner + np.array([[0.0, 0.0, outer[0, 2]], [0.0, 0.0, outer[1, 2]]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (..., 2) through a 2x3 affine, in float64."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def plan_crop(
    box: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    image_width: int,
    input_size: tuple[int, int],
    augment: Augment | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[Crop, np.ndarray, np.ndarray]:
    """Choose one sample's crop: the geometric augmentation, or the plain crop of the box.

    `box` is xyxy in image pixels, `keypoints` (K, 2) and `visible` (K,) its annotation,
    `input_size` the model's (h, w). Returns the crop and the keypoints (K, 2, crop pixels,
    float32) and visibility (K,) the crop shows, relabelled left/right when flipped.
    """
    out_h, out_w = input_size
    center, scale = box_center_scale(box)
    rotation, flip = 0.0, False
    visible = np.asarray(visible, np.float32)
    if augment is not None:
        if rng is None:
            raise ValueError("augmentation needs a numpy Generator (rng)")
        flip = bool(rng.random() < augment.flip_prob)
        if flip:
            keypoints = keypoints[FLIP_INDICES]
            keypoints = np.stack([image_width - 1 - keypoints[:, 0], keypoints[:, 1]], axis=1)
            visible = visible[FLIP_INDICES]
            center = np.array([image_width - 1 - center[0], center[1]], np.float32)
        half = _half_body(keypoints, visible, augment, rng)
        if half is not None:
            center, scale = half
        center, scale, rotation = _random_box(center, scale, augment, rng)
    scale = fix_aspect_ratio(scale, out_w / out_h)
    matrix = warp_matrix(center, scale, rotation, (out_w, out_h))
    crop_keypoints = transform_points(keypoints, matrix).astype(np.float32)
    if flip:
        matrix = compose(matrix, flip_matrix(image_width))
    return Crop(center, scale, rotation, flip, matrix), crop_keypoints, visible


def _half_body(
    keypoints: np.ndarray, visible: np.ndarray, augment: Augment, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """RandomHalfBody: with some probability, the box of the upper or lower body's points."""
    if visible.sum() < augment.half_body_min_total or rng.random() > augment.half_body_prob:
        return None
    upper = [i for i in schema.UPPER_BODY_IDS if visible[i] > 0]
    lower = [i for i in schema.LOWER_BODY_IDS if visible[i] > 0]
    prefer_upper = rng.random() < augment.half_body_upper_prob
    upper_ok = len(upper) >= augment.half_body_min_upper
    lower_ok = len(lower) >= augment.half_body_min_lower
    if not (upper_ok or lower_ok):
        return None
    ids = upper if upper_ok and (prefer_upper or not lower_ok) else lower
    points = keypoints[ids]
    center = points.mean(axis=0)
    scale = (points.max(axis=0) - points.min(axis=0)) * augment.half_body_padding
    return center.astype(np.float32), scale.astype(np.float32)


def _random_box(
    center: np.ndarray, scale: np.ndarray, augment: Augment, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """RandomBBoxTransform: truncated-normal shift, scale and rotation, each with its probability."""
    v = truncated_normal(rng, 4).astype(np.float32)
    offset = v[:2] * augment.shift_factor if rng.random() < augment.shift_prob else np.zeros(2)
    low, high = augment.scale_range
    factor = (
        v[2] * (high - low) * 0.5 + (high + low) * 0.5 if rng.random() < augment.scale_prob else 1.0
    )
    rotation = float(v[3] * augment.rotate_factor) if rng.random() < augment.rotate_prob else 0.0
    return (
        (center + offset * scale).astype(np.float32),
        (scale * factor).astype(np.float32),
        rotation,
    )


def truncated_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """Standard normal draws restricted to [-1, 1] (scipy's truncnorm(-1, 1)), by rejection:
    exact, and much cheaper per sample than scipy's generic sampler."""
    out = np.empty(size)
    filled = 0
    while filled < size:
        z = rng.standard_normal(2 * size)
        z = z[np.abs(z) <= 1.0][: size - filled]
        out[filled : filled + len(z)] = z
        filled += len(z)
    return out


def warp(image: np.ndarray, matrix: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The (h, w, C) crop: bilinear, black outside the image, as TopdownAffine."""
    return cv2.warpAffine(image, matrix, (input_size[1], input_size[0]), flags=cv2.INTER_LINEAR)


def hsv_shift(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Add integer gains to hue (wrapping at OpenCV's 180), saturation and value (clipped)
    of an RGB uint8 image, through one table per channel. The HSV round trip quantises, so
    it changes the image even with zero gains, as YOLOXHSVRandomAug does in mmpose."""
    x = np.arange(256, dtype=np.int64)
    table = np.stack([(x + gains[0]) % 180, *(np.clip(x + g, 0, 255) for g in gains[1:])], axis=1)
    hsv = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), table.astype(np.uint8)[:, None, :])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def photometric(image: np.ndarray, augment: Augment, rng: np.random.Generator) -> np.ndarray:
    """HSV jitter, blur, median blur and one dropped rectangle on an RGB uint8 crop."""
    gains = rng.uniform(-1.0, 1.0, 3) * augment.hsv_deltas * rng.integers(0, 2, 3)
    image = hsv_shift(image, gains.astype(np.int16))  # truncated towards zero, as YOLOX
    if rng.random() < augment.blur_prob:
        k = int(rng.choice(augment.blur_kernels))
        image = cv2.blur(image, (k, k))
    if rng.random() < augment.median_blur_prob:
        image = cv2.medianBlur(image, int(rng.choice(augment.blur_kernels)))
    if rng.random() < augment.dropout_prob:
        h, w = image.shape[:2]
        low, high = augment.dropout_size
        hole_h, hole_w = int(h * rng.uniform(low, high)), int(w * rng.uniform(low, high))
        y, x = int(rng.integers(0, h - hole_h + 1)), int(rng.integers(0, w - hole_w + 1))
        image[y : y + hole_h, x : x + hole_w] = 0
    return image
