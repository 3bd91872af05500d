"""Training augmentation (comfyui_dwpose.train.augment) against hand-derived matrices and points,
mmpose 1.3.2's flip pairs and config values, and its sampling distributions."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from comfyui_dwpose import schema
from comfyui_dwpose.train import augment as aug

# mmpose configs/_base_/datasets/coco_wholebody.py: the "swap" partner of each of the 133
# keypoints, as indices (the list mmpose's parse_pose_metainfo makes).
MMPOSE_FLIP_INDICES = [
    0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 20, 21, 22, 17, 18, 19,
    39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23,
    49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 50, 51, 52, 53, 58, 57, 56, 55, 54,
    68, 67, 66, 65, 70, 69, 62, 61, 60, 59, 64, 63,
    77, 76, 75, 74, 73, 72, 71, 82, 81, 80, 79, 78, 87, 86, 85, 84, 83, 90, 89, 88,
    *range(112, 133), *range(91, 112),
]  # fmt: skip


def test_flip_indices_are_coco_wholebody_pairs():
    assert list(schema.FLIP_INDICES) == MMPOSE_FLIP_INDICES
    flip = np.array(schema.FLIP_INDICES)
    assert (flip[flip] == np.arange(133)).all()  # a swap undone by a second swap
    assert tuple(range(11)) == schema.UPPER_BODY_IDS  # nose .. right wrist
    assert tuple(range(11, 23)) == schema.LOWER_BODY_IDS  # hips .. right heel


def test_presets_are_the_released_configs():
    main, final = aug.PRESETS["coco-wholebody"]
    assert (main.scale_range, main.rotate_factor, main.shift_factor, main.dropout_prob) == (
        (0.6, 1.4), 80.0, 0.16, 1.0,
    )  # fmt: skip
    assert (final.scale_range, final.rotate_factor, final.shift_factor, final.dropout_prob) == (
        (0.75, 1.25), 60.0, 0.0, 0.5,
    )  # fmt: skip
    main, final = aug.PRESETS["coco-ubody"]
    assert (main.scale_range, main.rotate_factor, final.scale_range, final.rotate_factor) == (
        (0.5, 1.5), 90.0, (0.5, 1.5), 90.0,
    )  # fmt: skip
    assert (final.shift_factor, final.dropout_prob) == (0.0, 0.5)
    assert (main.flip_prob, main.half_body_prob, main.rotate_prob, main.shift_prob) == (
        0.5,
        0.3,
        0.6,
        0.3,
    )
    assert aug.FINAL_EPOCHS == 30


# Box (10, 20)-(110, 220) into 256x192 (h x w): centre (60, 120); padded 125 x 250, widened to
# the 3:4 aspect: 187.5 x 250. Scale 192 / 187.5 = 1.024; offsets 96 - 1.024 * 60 = 34.56 and
# 128 - 1.024 * 120 = 5.12.
BOX = np.array([10.0, 20.0, 110.0, 220.0])


def _box_crop():
    center, scale = aug.box_center_scale(BOX)
    return center, aug.fix_aspect_ratio(scale, 192 / 256)


def test_center_scale_and_aspect_by_hand():
    center, scale = _box_crop()
    np.testing.assert_array_equal(center, [60.0, 120.0])
    np.testing.assert_array_equal(scale, [187.5, 250.0])
    # A wide box keeps its width and grows in height.
    np.testing.assert_allclose(aug.fix_aspect_ratio(np.array([300.0, 100.0]), 0.75), [300.0, 400.0])


def test_warp_matrix_by_hand():
    center, scale = _box_crop()
    m = aug.warp_matrix(center, scale, 0.0, (192, 256))
    np.testing.assert_allclose(m, [[1.024, 0.0, 34.56], [0.0, 1.024, 5.12]], atol=1e-9)
    # Box corners: (10, 20) -> (44.8, 25.6); (110, 220) -> (147.2, 230.4).
    pts = aug.transform_points(np.array([[10.0, 20.0], [110.0, 220.0]]), m)
    np.testing.assert_allclose(pts, [[44.8, 25.6], [147.2, 230.4]], atol=1e-9)


def test_rotated_warp_matrix_by_hand():
    center, scale = _box_crop()
    # 90 degrees: a point 100 px above the centre lands 102.4 px left of the crop centre.
    m = aug.warp_matrix(center, scale, 90.0, (192, 256))
    np.testing.assert_allclose(m, [[0.0, 1.024, -26.88], [-1.024, 0.0, 189.44]], atol=1e-6)
    np.testing.assert_allclose(
        aug.transform_points(np.array([60.0, 20.0]), m), [-6.4, 128.0], atol=1e-6
    )
    # Any angle t: s * [[cos t, sin t], [-sin t, cos t]] about the centre.
    t = math.radians(30.0)
    s = 1.024
    rot = s * np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    expected = np.hstack([rot, (np.array([96.0, 128.0]) - rot @ [60.0, 120.0])[:, None]])
    np.testing.assert_allclose(
        aug.warp_matrix(center, scale, 30.0, (192, 256)), expected, atol=1e-5
    )


def _ramps(h: int, w: int) -> np.ndarray:
    """A float32 image whose two channels are each pixel's x and y."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([xs, ys])


@pytest.mark.parametrize("seed", range(4))
def test_pixels_and_keypoints_go_through_the_same_map(seed):
    """Warp images holding their own coordinates: each crop pixel then shows where it was
    sampled; the matrix must send that place back onto the crop pixel (flip and rotation
    included). OpenCV quantises sample positions to 1/32 px."""
    h, w = 300, 400
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform([50, 40], [350, 260], (133, 2)).astype(np.float32)
    visible = np.ones(133, np.float32)
    always = aug.replace(aug.COCO_UBODY, flip_prob=1.0, rotate_prob=1.0, half_body_prob=0.0)
    crop, crop_kpts, _ = aug.plan_crop(
        np.array([60, 30, 330, 280]), keypoints, visible, w, (64, 48), always, rng
    )
    assert crop.flip and crop.rotation != 0.0
    sampled = aug.warp(_ramps(h, w), crop.matrix, (64, 48))
    grid = np.dstack(np.mgrid[0:64, 0:48][::-1]).astype(np.float64)
    source = aug.transform_points(grid, cv2.invertAffineTransform(crop.matrix))
    inside = ((source > 1) & (source < [w - 2, h - 2])).all(axis=2)  # away from the black border
    assert inside.sum() > 500
    back = aug.transform_points(sampled[inside], crop.matrix)
    assert np.abs(back - grid[inside]).max() < 1 / 32
    # Keypoints: the same matrix, with left and right labels swapped.
    expected = aug.transform_points(keypoints[aug.FLIP_INDICES], crop.matrix)
    np.testing.assert_allclose(crop_kpts, expected, atol=1e-4)


def test_folded_flip_equals_mmpose_flipping_the_image_first():
    """mmpose mirrors the whole image, then warps; we fold the mirror into the matrix."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
    center = np.array([159 - 70.0, 60.0], np.float32)  # the box centre (70, 60) mirrored
    m = aug.warp_matrix(center, np.array([90.0, 120.0], np.float32), 25.0, (48, 64))
    ours = aug.warp(image, aug.compose(m, aug.flip_matrix(160)), (64, 48))
    theirs = aug.warp(cv2.flip(image, 1), m, (64, 48))
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_plain_crop_without_augmentation():
    keypoints = np.array([[10.0, 20.0], [110.0, 220.0]] + [[60.0, 120.0]] * 131, np.float32)
    crop, kpts, _ = aug.plan_crop(BOX, keypoints, np.ones(133), 640, (256, 192))
    assert (crop.flip, crop.rotation) == (False, 0.0)
    np.testing.assert_allclose(kpts[:3], [[44.8, 25.6], [147.2, 230.4], [96.0, 128.0]], atol=1e-4)


def _keypoints_for_half_body():
    kpts = np.zeros((133, 2), np.float32)
    kpts[:11] = np.c_[np.linspace(100, 200, 11), np.linspace(50, 150, 11)]  # upper
    kpts[11:23] = np.c_[np.linspace(120, 180, 12), np.linspace(200, 400, 12)]  # lower
    return kpts


def test_half_body_box_by_hand():
    kpts = _keypoints_for_half_body()
    vis = np.zeros(133, np.float32)
    vis[:23] = 1.0
    always_upper = aug.replace(aug.COCO_WHOLEBODY, half_body_prob=1.0, half_body_upper_prob=1.0)
    center, scale = aug._half_body(kpts, vis, always_upper, np.random.default_rng(0))
    np.testing.assert_allclose(center, [150.0, 100.0])  # mean of the 11 upper points
    np.testing.assert_allclose(scale, [150.0, 150.0])  # (100, 100) range x 1.5
    always_lower = aug.replace(always_upper, half_body_upper_prob=0.0)
    center, scale = aug._half_body(kpts, vis, always_lower, np.random.default_rng(0))
    np.testing.assert_allclose(center, [150.0, 300.0], rtol=1e-6)
    np.testing.assert_allclose(scale, [90.0, 300.0])
    # Too few lower points: the upper half, whatever is preferred.
    vis[13:23] = 0.0
    center, _ = aug._half_body(kpts, vis, always_lower, np.random.default_rng(0))
    np.testing.assert_allclose(center, [150.0, 100.0])
    # Fewer than 9 visible points: no half body.
    vis[:] = 0.0
    vis[:8] = 1.0
    assert aug._half_body(kpts, vis, always_upper, np.random.default_rng(0)) is None


def test_random_box_follows_mmpose_distributions():
    """RandomBBoxTransform: truncated normal on [-1, 1] scaled to each range, each part
    applied with its probability (shift 0.3, scale 1.0, rotation 0.6)."""
    rng = np.random.default_rng(123)
    n = 20000
    draws = [
        aug._random_box(np.zeros(2, np.float32), np.ones(2, np.float32), aug.COCO_WHOLEBODY, rng)
        for _ in range(n)
    ]
    offsets = np.array([d[0] for d in draws])
    factors = np.array([d[1][0] for d in draws])
    rotations = np.array([d[2] for d in draws])
    shifted = (offsets != 0).any(axis=1)
    assert abs(shifted.mean() - 0.3) < 0.015
    assert np.abs(offsets).max() <= 0.16 + 1e-6
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    truncnorm_std = math.sqrt(
        1 - 2 * math.exp(-0.5) / math.sqrt(2 * math.pi) / math.erf(1 / math.sqrt(2))
    )
    assert abs(factors.mean() - 1.0) < 0.01
    assert abs(factors.std() - 0.4 * truncnorm_std) < 0.01
    rotated = rotations != 0
    assert abs(rotated.mean() - 0.6) < 0.015
    assert np.abs(rotations).max() <= 80.0
    assert abs(rotations[rotated].std() - 80 * truncnorm_std) < 1.5


def test_flip_happens_half_the_time():
    rng = np.random.default_rng(5)
    kpts = _keypoints_for_half_body()
    flips = [
        aug.plan_crop(BOX, kpts, np.ones(133), 640, (64, 48), aug.COCO_WHOLEBODY, rng)[0].flip
        for _ in range(4000)
    ]
    assert abs(np.mean(flips) - 0.5) < 0.03


def test_photometric_ops():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    nothing = aug.replace(
        aug.COCO_WHOLEBODY,
        hsv_deltas=(0, 0, 0),
        blur_prob=0.0,
        median_blur_prob=0.0,
        dropout_prob=0.0,
    )
    # No change asked: still the HSV round trip of YOLOXHSVRandomAug (it quantises).
    round_trip = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), cv2.COLOR_HSV2RGB)
    np.testing.assert_array_equal(aug.photometric(image.copy(), nothing, rng), round_trip)
    # Dropout: one black rectangle of 20-40 % of each side.
    only_dropout = aug.replace(nothing, dropout_prob=1.0)
    bright = np.full((100, 50, 3), 200, np.uint8)
    for _ in range(50):
        out = aug.photometric(bright.copy(), only_dropout, rng)
        rows, cols = np.nonzero((out == 0).all(axis=2))
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert (out == 0).all(axis=2).sum() == h * w
        assert 20 <= h <= 40 and 10 <= w <= 20
    # Blur and median blur: kernels of 3, 5 or 7, as albumentations' blur_limit=7.
    only_blur = aug.replace(nothing, blur_prob=1.0)
    out = aug.photometric(image.copy(), only_blur, np.random.default_rng(1))
    assert any(np.array_equal(out, cv2.blur(round_trip, (k, k))) for k in (3, 5, 7))
    only_median = aug.replace(nothing, median_blur_prob=1.0)
    out = aug.photometric(image.copy(), only_median, np.random.default_rng(1))
    assert any(np.array_equal(out, cv2.medianBlur(round_trip, k)) for k in (3, 5, 7))
    # HSV gains: hue shifts wrap at 180, saturation and value clip.
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    full = aug.replace(nothing, hsv_deltas=(5, 30, 30))
    hues = {
        int(cv2.cvtColor(aug.photometric(red.copy(), full, rng), cv2.COLOR_RGB2HSV)[0, 0, 0])
        for _ in range(200)
    }
    assert hues <= {*range(0, 5), *range(176, 180)} and len(hues) > 3


@pytest.mark.parametrize("gains", [(0, 0, 0), (-5, 30, -30), (4, -17, 22), (-1, 0, 29)])
def test_hsv_shift_is_yolox_int16_arithmetic(gains):
    """mmdet's YOLOXHSVRandomAug: to HSV as int16, hue (h + g) % 180, s and v clipped."""
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1:] = np.clip(hsv[..., 1:] + np.array(gains[1:], np.int16), 0, 255)
    expected = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    np.testing.assert_array_equal(aug.hsv_shift(image, np.array(gains, np.int16)), expected)


def test_truncated_normal():
    z = aug.truncated_normal(np.random.default_rng(0), 100000)
    assert np.abs(z).max() <= 1.0
    assert abs(z.mean()) < 0.01 and abs(z.std() - 0.5396) < 0.005


def test_same_generator_state_same_sample():
    kpts = _keypoints_for_half_body()
    image = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)

    def run(seed):
        rng = np.random.default_rng(seed)
        crop, k, _ = aug.plan_crop(BOX, kpts, np.ones(133), 640, (64, 48), aug.COCO_UBODY, rng)
        return crop.matrix, k, aug.photometric(image.copy(), aug.COCO_UBODY, rng)

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
