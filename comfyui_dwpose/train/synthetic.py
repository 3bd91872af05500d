"""A synthetic whole-body dataset: cartoon people with 133 known keypoints, written as
COCO-WholeBody json + PNG images, so it goes through the same dataset code as the real sets.

Each figure has a jointed body (limbs coloured per side and segment, joints marked), feet
with heel and toes, hands with five fingers and a 68-point face (jaw, brows, nose, eyes,
lips). Every keypoint sits where the drawing shows it: at a joint, a line end, or where a
curve changes shade (fingers, jaw, brows and lips alternate two shades per segment). Heads
and hands are drawn larger than life so that face and finger points stay visible at small
sizes. Pose, scale, rotation, skin and clothes vary; backgrounds mix gradients, blobs,
stripes and clutter; occluders and a second person hide parts (visibility 1), the image
border cuts others off (visibility 0, as COCO's unlabelled points).

Everything is drawn from numpy Generators seeded by (seed, split, image index): the same
arguments give the same bytes. Command line:

    python -m comfyui_dwpose.train.synthetic OUT [--train 2000] [--val 500] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .. import files, schema

BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
SPLITS = {"train": 0, "val": 1}
OCCLUDER = 255  # label of occluders in the ownership map


def _ellipse_points(center, rx, ry, degrees):
    """Points on an ellipse (y down) at angles measured counter-clockwise as seen."""
    a = np.deg2rad(np.asarray(degrees, np.float64))
    return np.stack([center[0] + rx * np.cos(a), center[1] - ry * np.sin(a)], axis=1)


def _canonical_face() -> np.ndarray:
    """The 68 iBUG landmarks of a neutral frontal face, in head radii about the head centre,
    the subject's right (points 0, 36-41) on the image's left."""
    i = np.arange(17)
    jaw = np.stack([-0.9 * np.cos(np.pi * i / 16), -0.15 + 0.95 * np.sin(np.pi * i / 16)], 1)
    brow_x = np.linspace(0.15, 0.72, 5)
    brow_y = -0.5 - 0.08 * np.sin(np.pi * (brow_x - 0.15) / 0.57)
    right_brow = np.stack([-brow_x[::-1], brow_y[::-1]], 1)
    left_brow = np.stack([brow_x, brow_y], 1)
    bridge = np.stack([np.zeros(4), np.linspace(-0.3, 0.08, 4)], 1)
    nostrils = np.array([[-0.2, 0.2], [-0.1, 0.23], [0.0, 0.25], [0.1, 0.23], [0.2, 0.2]])
    eye_angles = (180, 120, 60, 0, -60, -120)
    right_eye = _ellipse_points((-0.38, -0.2), 0.17, 0.08, eye_angles)
    left_eye = _ellipse_points((0.38, -0.2), 0.17, 0.08, eye_angles)
    outer_lips = _ellipse_points((0.0, 0.5), 0.33, 0.13, 180 - 30 * np.arange(12))
    inner_lips = _ellipse_points((0.0, 0.5), 0.22, 0.05, 180 - 45 * np.arange(8))
    return np.concatenate(
        [jaw, right_brow, left_brow, bridge, nostrils, right_eye, left_eye, outer_lips, inner_lips]
    )


FACE = _canonical_face()
# Curves of the face, as landmark index runs (local to the 68).
FACE_CURVES = {
    "jaw": list(range(17)),
    "right_brow": list(range(17, 22)),
    "left_brow": list(range(22, 27)),
    "bridge": list(range(27, 31)),
    "nostrils": list(range(31, 36)),
    "right_eye": [*range(36, 42), 36],
    "left_eye": [*range(42, 48), 42],
    "outer_lips": [*range(48, 60), 48],
    "inner_lips": [*range(60, 68), 60],
}
FACE_COLORS = {
    "jaw": (90, 50, 30), "right_brow": (60, 35, 20), "left_brow": (60, 35, 20),
    "bridge": (150, 80, 60), "nostrils": (120, 50, 40), "right_eye": (30, 30, 90),
    "left_eye": (30, 30, 90), "outer_lips": (190, 30, 50), "inner_lips": (110, 10, 30),
}  # fmt: skip
# Limb colours (RGB) by side: the person's left is warm, the right cool.
LIMB_COLORS = {
    ("left", "upper_arm"): (235, 120, 30), ("left", "forearm"): (245, 200, 40),
    ("right", "upper_arm"): (40, 110, 235), ("right", "forearm"): (40, 200, 235),
    ("left", "thigh"): (200, 50, 60), ("left", "shin"): (230, 110, 170),
    ("right", "thigh"): (50, 150, 60), ("right", "shin"): (120, 225, 130),
}  # fmt: skip
FINGER_COLORS = ((230, 40, 40), (250, 150, 20), (240, 240, 40), (40, 200, 80), (60, 90, 250))
SKIN_TONES = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36))

# Hands: per finger (thumb, index, middle, ring, pinky) the base point as (along the
# forearm, towards the thumb) offsets from the wrist, the segment lengths and the splay
# (degrees towards the thumb side), in figure heights.
FINGER_BASES = ((0.012, 0.018), (0.038, 0.018), (0.041, 0.006), (0.039, -0.006), (0.035, -0.017))
FINGER_SEGMENTS = (
    (0.017, 0.014, 0.012), (0.02, 0.013, 0.011), (0.022, 0.015, 0.012),
    (0.02, 0.013, 0.011), (0.016, 0.011, 0.009),
)  # fmt: skip
FINGER_SPLAY = (55.0, 12.0, 0.0, -12.0, -24.0)


def _rot(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _direction(deg: float) -> np.ndarray:
    """A unit vector `deg` degrees from straight down, turning outwards (+x) for positive."""
    a = math.radians(deg)
    return np.array([math.sin(a), math.cos(a)])


def random_pose(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """133 keypoints of one figure, in figure heights about the pelvis (y down), and what the
    drawing needs besides (head ellipse, hand sizes)."""
    k = np.zeros((schema.NUM_KEYPOINTS, 2))
    lean = rng.normal(0.0, 7.0)
    body = _rot(lean)
    neck = body @ [0.0, -0.3]
    tilt = lean + rng.normal(0.0, 10.0)
    head_center = neck + _rot(tilt) @ [0.0, -0.13]
    head = (0.1, 0.12)
    face = FACE.copy()
    face[48:68, 1] += rng.uniform(-0.05, 0.05)  # mouth height
    mouth_open = rng.uniform(0.0, 0.08)
    face[61:64, 1] -= mouth_open
    face[65:68, 1] += mouth_open
    face[[48, 54, 60, 64], 1] -= rng.uniform(-0.06, 0.1)  # smile
    face[17:27, 1] -= rng.uniform(-0.05, 0.1)  # brows
    yaw = rng.uniform(-0.12, 0.12)  # nose and mouth slide a little sideways
    face[27:36, 0] += yaw
    face[48:68, 0] += 0.6 * yaw
    face += rng.normal(0.0, 0.015, face.shape)
    k[schema.FACE] = head_center + (face * head) @ _rot(tilt).T
    k[0] = k[schema.FACE.start + 30]  # nose tip
    k[1] = k[schema.FACE.start + 42 : schema.FACE.start + 48].mean(axis=0)  # left eye
    k[2] = k[schema.FACE.start + 36 : schema.FACE.start + 42].mean(axis=0)
    hand_scale = rng.uniform(0.9, 1.2)
    for side, s in (("left", 1.0), ("right", -1.0)):
        mirror = np.array([s, 1.0])
        k[3 if s > 0 else 4] = head_center + _rot(tilt) @ (mirror * [1.0 * head[0], -0.02])
        shoulder = neck + body @ (mirror * [0.115, 0.03])
        hip = mirror * [0.075, 0.0]
        upper = rng.uniform(-25.0, 170.0)
        elbow_bend = rng.uniform(-30.0, 140.0)
        wrist_bend = rng.uniform(-35.0, 35.0)
        arm = [_direction(upper), _direction(upper + elbow_bend)]
        elbow = shoulder + body @ (mirror * 0.15 * arm[0])
        wrist = elbow + body @ (mirror * 0.14 * arm[1])
        thigh = rng.uniform(-12.0, 45.0)
        knee_bend = rng.uniform(-15.0, 90.0) * rng.choice((-1.0, 1.0))
        knee = hip + mirror * 0.22 * _direction(thigh)
        ankle = knee + mirror * 0.21 * _direction(thigh + knee_bend)
        ids = {"left": (5, 7, 9, 11, 13, 15), "right": (6, 8, 10, 12, 14, 16)}[side]
        k[list(ids)] = [shoulder, elbow, wrist, hip, knee, ankle]
        # Foot: heel behind and below the ankle, toes ahead (outwards), the big toe higher.
        toward = _direction(rng.uniform(70.0, 110.0))
        down = np.array([-toward[1], toward[0]])
        feet = [
            ankle + mirror * (0.075 * toward + 0.01 * down),
            ankle + mirror * (0.062 * toward + 0.03 * down),
            ankle + mirror * (-0.02 * toward + 0.035 * down),
        ]
        start = schema.FEET.start + (0 if s > 0 else 3)
        k[start : start + 3] = feet
        hand = _hand(_direction(upper + elbow_bend + wrist_bend), hand_scale, rng)
        hand_range = schema.LEFT_HAND if s > 0 else schema.RIGHT_HAND
        k[hand_range] = wrist + (mirror * hand) @ body.T
    return k, {"head_center": head_center, "head": head, "tilt": tilt, "hand_scale": hand_scale}


def _hand(forward: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """21 hand points about the wrist, in the outward frame (thumb towards +x when hanging)."""
    thumbward = np.array([forward[1], -forward[0]])
    points = [np.zeros(2)]
    curl = rng.uniform(0.0, 45.0)
    spread = rng.uniform(0.6, 1.4)
    for (along, across), segments, splay in zip(FINGER_BASES, FINGER_SEGMENTS, FINGER_SPLAY):
        p = scale * (along * forward + across * thumbward)
        heading = math.degrees(math.atan2(forward[0], forward[1])) + splay * spread
        finger_curl = curl * rng.uniform(0.5, 1.5)
        points.append(p)
        for length in segments:
            heading -= finger_curl
            p = p + scale * length * _direction(heading)
            points.append(p)
    return np.array(points)


class Canvas:
    """An RGB image and the ownership map drawn together (who covers each pixel)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.owner = np.zeros(image.shape[:2], np.uint8)

    def line(self, a, b, color, thickness: int, owner: int | None) -> None:
        self.polyline([a, b], color, thickness, owner)

    def polyline(
        self, points, color, thickness: int, owner: int | None, closed: bool = False
    ) -> None:
        self.segments([_fixed(points)], color, thickness, owner, closed)

    def segments(
        self, runs: list[np.ndarray], color, thickness: int, owner: int | None, closed: bool = False
    ) -> None:
        """Several polylines (fixed-point runs) in one colour."""
        cv2.polylines(self.image, runs, closed, color, thickness, cv2.LINE_AA, 4)
        if owner is not None:
            cv2.polylines(self.owner, runs, closed, owner, thickness, cv2.LINE_8, 4)

    def fill(self, points, color, owner: int | None) -> None:
        pts = [_fixed(points)]
        cv2.fillPoly(self.image, pts, color, cv2.LINE_AA, 4)
        if owner is not None:
            cv2.fillPoly(self.owner, pts, owner, cv2.LINE_8, 4)

    def disc(self, center, radius: float, color, owner: int | None) -> None:
        c = tuple(_fixed(center))
        r = max(1, round(radius * 16))
        cv2.circle(self.image, c, r, color, -1, cv2.LINE_AA, 4)
        if owner is not None:
            cv2.circle(self.owner, c, r, owner, -1, cv2.LINE_8, 4)


def _fixed(points) -> np.ndarray:
    """Coordinates in OpenCV's 4-bit fixed point, so drawings land at sub-pixel positions."""
    return np.round(np.asarray(points, np.float64) * 16).astype(np.int32)


def _shade(color, factor: float) -> tuple[int, ...]:
    return tuple(int(min(255, max(0, c * factor))) for c in color)


def _jitter(color, rng: np.random.Generator, amount: int = 18) -> tuple[int, ...]:
    return tuple(
        int(v) for v in np.clip(np.array(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    )


def _alternating(canvas: Canvas, points: np.ndarray, color, thickness: int, owner) -> None:
    """A polyline whose segments alternate two shades: each vertex is a visible boundary."""
    fixed = _fixed(points)
    pairs = [fixed[i : i + 2] for i in range(len(fixed) - 1)]
    canvas.segments(pairs[0::2], _shade(color, 1.25), thickness, owner)
    if len(pairs) > 1:
        canvas.segments(pairs[1::2], _shade(color, 0.7), thickness, owner)


def draw_person(
    canvas: Canvas, k: np.ndarray, extras: dict, height: float, owner: int, rng
) -> None:
    """Draw one figure whose keypoints (image pixels) are `k`, `height` pixels tall."""
    limb = max(2, round(0.045 * height))
    joint = max(1.2, 0.024 * height)
    skin = _jitter(SKIN_TONES[rng.integers(len(SKIN_TONES))], rng, 10)
    shirt = tuple(int(c) for c in rng.integers(30, 226, 3))
    colors = {key: _jitter(c, rng) for key, c in LIMB_COLORS.items()}
    for side, (hip, knee, ankle), feet in (("left", (11, 13, 15), 17), ("right", (12, 14, 16), 20)):
        canvas.line(k[hip], k[knee], colors[side, "thigh"], limb + 1, owner)
        canvas.line(k[knee], k[ankle], colors[side, "shin"], limb, owner)
        canvas.fill(k[[ankle, feet, feet + 1, feet + 2]], _shade(colors[side, "shin"], 0.6), owner)
        canvas.disc(k[feet], joint * 0.6, (250, 250, 250), owner)
        canvas.disc(k[feet + 1], joint * 0.6, (20, 20, 20), owner)
        canvas.disc(k[feet + 2], joint * 0.6, (150, 40, 150), owner)
        canvas.disc(k[knee], joint, _shade(colors[side, "thigh"], 0.5), owner)
        canvas.disc(k[ankle], joint, _shade(colors[side, "shin"], 0.5), owner)
    torso = k[[5, 6, 12, 11]]
    canvas.fill(torso, shirt, owner)
    canvas.polyline(torso, _shade(shirt, 0.5), 1, owner, closed=True)
    for hip in (11, 12):
        canvas.disc(k[hip], joint, _shade(shirt, 0.4), owner)
    neck = (k[5] + k[6]) / 2
    canvas.line(neck, extras["head_center"], skin, limb, owner)
    _draw_head(canvas, k, extras, height, skin, owner, rng)
    for side, (shoulder, elbow, wrist), hand in (
        ("left", (5, 7, 9), schema.LEFT_HAND),
        ("right", (6, 8, 10), schema.RIGHT_HAND),
    ):
        canvas.line(k[shoulder], k[elbow], colors[side, "upper_arm"], limb, owner)
        canvas.line(k[elbow], k[wrist], colors[side, "forearm"], max(2, limb - 1), owner)
        canvas.disc(k[shoulder], joint, _shade(colors[side, "upper_arm"], 0.5), owner)
        canvas.disc(k[elbow], joint, _shade(colors[side, "upper_arm"], 0.5), owner)
        _draw_hand(
            canvas,
            k[hand],
            height * extras["hand_scale"],
            skin,
            _shade(colors[side, "forearm"], 0.6),
            owner,
        )


def _draw_head(canvas: Canvas, k, extras, height, skin, owner, rng) -> None:
    center = extras["head_center"]
    rx, ry = (r * height for r in extras["head"])
    hair = tuple(int(c) for c in rng.integers(10, 120, 3))
    c = tuple(_fixed(center))
    axes = (round(rx * 16 * 1.08), round(ry * 16 * 1.1))
    cv2.ellipse(canvas.image, c, axes, extras["tilt"], 180, 360, hair, -1, cv2.LINE_AA, 4)
    cv2.ellipse(canvas.owner, c, axes, extras["tilt"], 180, 360, owner, -1, cv2.LINE_8, 4)
    for ear in (3, 4):
        canvas.disc(k[ear], 0.22 * rx, _shade(skin, 0.8), owner)
    axes = (round(rx * 16), round(ry * 16))
    cv2.ellipse(canvas.image, c, axes, extras["tilt"], 0, 360, skin, -1, cv2.LINE_AA, 4)
    cv2.ellipse(canvas.owner, c, axes, extras["tilt"], 0, 360, owner, -1, cv2.LINE_8, 4)
    face = k[schema.FACE]
    for name, run in FACE_CURVES.items():
        if name.endswith("eye"):
            canvas.fill(face[run[:-1]], (250, 250, 250), owner)
            canvas.disc(face[run[:-1]].mean(axis=0), 0.25 * ry * 0.5, (20, 20, 20), owner)
        _alternating(canvas, face[run], FACE_COLORS[name], 1, owner)


def _draw_hand(canvas: Canvas, hand: np.ndarray, size: float, skin, cuff, owner) -> None:
    palm = hand[[0, 1, 5, 9, 13, 17]]
    canvas.fill(palm, skin, owner)
    canvas.disc(hand[0], max(1.0, 0.014 * size), cuff, owner)
    width = max(1, round(0.009 * size))
    for finger, color in enumerate(FINGER_COLORS):
        run = (
            hand[[0, *range(1 + 4 * finger, 5 + 4 * finger)]]
            if finger == 0
            else hand[1 + 4 * finger : 5 + 4 * finger]
        )
        _alternating(canvas, run, color, width, owner)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient, blobs or stripes, with clutter that includes limb-like sticks."""
    kind = rng.integers(3)
    if kind == 0:
        a, b = rng.integers(0, 256, (2, 3))
        t = (
            np.linspace(0.0, 1.0, h)[:, None, None]
            if rng.random() < 0.5
            else np.linspace(0.0, 1.0, w)[None, :, None]
        )
        image = np.broadcast_to(a + (b - a) * t, (h, w, 3))
    elif kind == 1:
        cells = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3)).astype(np.float32)
        image = cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        period = rng.integers(6, 24)
        a, b = rng.integers(0, 256, (2, 3))
        angle = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:h, 0:w]
        band = ((xs * np.cos(angle) + ys * np.sin(angle)) // period) % 2
        image = np.where(band[..., None] == 0, a, b)
    canvas = Canvas(np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8)))
    for _ in range(rng.integers(4, 16)):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p = rng.uniform(0, 1, 2) * [w, h]
        shape = rng.integers(3)
        if shape == 0:
            canvas.line(
                p, p + rng.normal(0, 0.25, 2) * [w, h], color, int(rng.integers(1, 6)), None
            )
        elif shape == 1:
            canvas.disc(p, rng.uniform(1, 0.08 * w), color, None)
        else:
            canvas.fill(p + rng.normal(0, 0.08, (4, 2)) * [w, h], color, None)
    return canvas.image


def render_image(
    rng: np.random.Generator, size: tuple[int, int], max_people: int = 2
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """One RGB image (h, w), its ownership map and, per person, the 133 keypoints and the
    COCO visibility (2 seen, 1 hidden by something else, 0 outside the image)."""
    h, w = size
    canvas = Canvas(_background(rng, h, w))
    people = []
    count = 1 if max_people == 1 or rng.random() < 0.7 else int(rng.integers(2, max_people + 1))
    for person in range(count):
        height = rng.uniform(0.45, 0.95) * h
        k, extras = random_pose(rng)
        angle = rng.normal(0.0, 20.0) if rng.random() < 0.8 else rng.uniform(-180.0, 180.0)
        turn = _rot(angle)
        # The pelvis: the figure spans about 0.55 above it and 0.47 below; some cut off.
        low, high = 0.55 * height - 0.1 * h, h - 0.47 * height + 0.1 * h
        centre = np.array(
            [rng.uniform(0.2 * w, 0.8 * w), rng.uniform(min(low, high), max(low, high))]
        )
        k = centre + (k * height) @ turn.T
        extras = dict(
            extras,
            head_center=centre + (extras["head_center"] * height) @ turn.T,
            tilt=extras["tilt"] + angle,
        )
        draw_person(canvas, k, extras, height, person + 1, rng)
        people.append(k)
    for _ in range(rng.binomial(count, 0.4)):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p = rng.uniform(0, 1, 2) * [w, h]
        half = rng.uniform(0.08, 0.25, 2) * [w, h]
        if rng.random() < 0.5:
            canvas.fill(p + half * [[-1, -1], [1, -1], [1, 1], [-1, 1]], color, OCCLUDER)
        else:
            canvas.disc(p, half.mean(), color, OCCLUDER)
    noise = rng.uniform(0.0, 6.0)
    grain = rng.standard_normal(canvas.image.shape, dtype=np.float32) * noise
    image = np.clip(canvas.image + grain, 0, 255).astype(np.uint8)
    results = []
    for person, k in enumerate(people, start=1):
        inside = (k[:, 0] >= 0) & (k[:, 0] <= w - 1) & (k[:, 1] >= 0) & (k[:, 1] <= h - 1)
        px = np.clip(np.round(k).astype(int), 0, [w - 1, h - 1])
        seen = canvas.owner[px[:, 1], px[:, 0]] == person
        v = np.where(inside, np.where(seen, 2, 1), 0)
        results.append((np.where(inside[:, None], k, 0.0), v))
    return image, canvas.owner, results


def annotation(
    keypoints: np.ndarray, visible: np.ndarray, mask: np.ndarray, ann_id: int, image_id: int
) -> dict | None:
    """The COCO-WholeBody annotation of one person, or None when nothing of it is seen."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    box = [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]
    triplets = np.c_[np.round(keypoints, 2), visible]

    def part(rng_: slice) -> list[float]:
        return [float(v) for v in triplets[rng_].ravel()]

    def part_box(rng_: slice) -> list[float]:
        pts = keypoints[rng_][visible[rng_] > 0]
        if len(pts) == 0:
            return [0.0, 0.0, 0.0, 0.0]
        (x1, y1), (x2, y2) = pts.min(axis=0), pts.max(axis=0)
        return [
            round(float(x1), 2),
            round(float(y1), 2),
            round(float(x2 - x1), 2),
            round(float(y2 - y1), 2),
        ]

    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": box,
        "area": float(len(xs)),
        "segmentation": [
            [
                box[0],
                box[1],
                box[0] + box[2],
                box[1],
                box[0] + box[2],
                box[1] + box[3],
                box[0],
                box[1] + box[3],
            ]
        ],
        "num_keypoints": int((visible[schema.BODY] > 0).sum()),
        "keypoints": part(schema.BODY),
        "foot_kpts": part(schema.FEET),
        "face_kpts": part(schema.FACE),
        "lefthand_kpts": part(schema.LEFT_HAND),
        "righthand_kpts": part(schema.RIGHT_HAND),
        "face_box": part_box(schema.FACE),
        "lefthand_box": part_box(schema.LEFT_HAND),
        "righthand_box": part_box(schema.RIGHT_HAND),
        "face_valid": bool((visible[schema.FACE] > 0).any()),
        "lefthand_valid": bool((visible[schema.LEFT_HAND] > 0).any()),
        "righthand_valid": bool((visible[schema.RIGHT_HAND] > 0).any()),
        "foot_valid": bool((visible[schema.FEET] > 0).any()),
    }


def write_split(
    out_dir: str | os.PathLike,
    split: str,
    count: int,
    seed: int = 0,
    size: tuple[int, int] = (128, 128),
    max_people: int = 2,
    progress: bool = True,
) -> Path:
    """Render `count` images into OUT/images/SPLIT/ and their json into OUT/annotations/SPLIT.json
    (written last, through a temporary name: a json means a complete split)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(exist_ok=True)
    path = out_dir / "annotations" / f"{split}.json"
    path.unlink(missing_ok=True)  # an old json must not vouch for half-rewritten images
    images, annotations = [], []
    for index in tqdm(range(count), desc=f"synthetic {split}", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, SPLITS[split], index])
        image, owner, people = render_image(rng, size, max_people)
        name = f"{index:06d}.png"
        if not cv2.imwrite(
            str(image_dir / name),
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_PNG_COMPRESSION, 1],
        ):
            raise OSError(f"could not write {image_dir / name}")
        images.append({"id": index, "file_name": name, "width": size[1], "height": size[0]})
        for person, (k, v) in enumerate(people, start=1):
            ann = annotation(k, v, owner == person, len(annotations) + 1, index)
            if ann is not None:
                annotations.append(ann)
    data = {
        "info": {
            "description": f"comfyui-dwpose synthetic whole-body set, seed {seed}, split {split}"
        },
        "licenses": [],
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(BODY_NAMES),
                "skeleton": [list(p) for p in COCO_SKELETON],
            }
        ],
        "images": images,
        "annotations": annotations,
    }
    files.write_text(path, json.dumps(data))
    return path


def preview(
    out_png: str | os.PathLike,
    seed: int = 0,
    count: int = 8,
    size: tuple[int, int] = (128, 128),
    zoom: int = 2,
) -> None:
    """A picture of `count` samples with their keypoints: body white, feet cyan, face yellow,
    left hand magenta, right hand green; hollow where hidden (visibility 1)."""
    colors = (
        (schema.BODY, (255, 255, 255)),
        (schema.FEET, (0, 255, 255)),
        (schema.FACE, (255, 255, 0)),
        (schema.LEFT_HAND, (255, 0, 255)),
        (schema.RIGHT_HAND, (0, 255, 0)),
    )
    tiles = []
    for index in range(count):
        image, _, people = render_image(np.random.default_rng([seed, SPLITS["train"], index]), size)
        big = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        for k, v in people:
            for part, color in colors:
                for (x, y), vis in zip(k[part], v[part]):
                    if vis:
                        cv2.circle(
                            big,
                            (round((x + 0.5) * zoom - 0.5), round((y + 0.5) * zoom - 0.5)),
                            2,
                            color,
                            -1 if vis == 2 else 1,
                            cv2.LINE_AA,
                        )
        tiles.append(np.pad(big, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    cols = min(4, count)
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, count, cols)]
    rows[-1] = np.pad(
        rows[-1], ((0, 0), (0, rows[0].shape[1] - rows[-1].shape[1]), (0, 0)), constant_values=255
    )
    # 256 colours keep the picture small enough to commit (the sensor noise defeats PNG).
    Image.fromarray(np.vstack(rows)).quantize(256, dither=Image.Dither.NONE).save(
        out_png, optimize=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_dwpose.train.synthetic",
        description="Write a synthetic COCO-WholeBody-style dataset (images + json).",
    )
    parser.add_argument(
        "out", help="output folder: images/{train,val}/*.png, annotations/{train,val}.json"
    )
    parser.add_argument("--train", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--val", type=int, default=500, help="validation images (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="128", help="image size: N or HxW (default 128)")
    parser.add_argument(
        "--max-people", type=int, default=2, help="people per image, at most (default 2)"
    )
    parser.add_argument(
        "--preview", metavar="PNG", help="also write a picture of 8 samples with their keypoints"
    )
    args = parser.parse_args(argv)
    try:
        h, w = (
            (int(v) for v in args.size.lower().split("x"))
            if "x" in args.size.lower()
            else (int(args.size),) * 2
        )
    except ValueError:
        parser.error(f"--size: expected N or HxW, got {args.size!r}")
    if min(h, w) < 32 or args.train < 0 or args.val < 0 or args.max_people < 1:
        parser.error(
            "--size must be at least 32, --train/--val not negative, --max-people at least 1"
        )
    start = time.perf_counter()
    for split, count in (("train", args.train), ("val", args.val)):
        if count:
            path = write_split(args.out, split, count, args.seed, (h, w), args.max_people)
            people = len(json.loads(path.read_text())["annotations"])
            print(f"{path}: {count} images, {people} people")
    if args.preview:
        preview(args.preview, args.seed, size=(h, w))
        print(f"{args.preview}: preview")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
