"""Synthetic people with known ground truth, for the video tests: whole-body skeletons that
walk, swing their arms and cross, observed with noise and dropouts as a detector and pose
model would report them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comfyui_dwpose import schema
from comfyui_dwpose.result import PoseFrame

# A standing person, 1 unit tall, feet at y = 0.5, in COCO body order (x to the image right).
BODY = np.array([
    [0.0, -0.42], [0.03, -0.44], [-0.03, -0.44], [0.06, -0.43], [-0.06, -0.43],
    [0.12, -0.30], [-0.12, -0.30], [0.15, -0.12], [-0.15, -0.12], [0.16, 0.03],
    [-0.16, 0.03], [0.08, 0.02], [-0.08, 0.02], [0.09, 0.25], [-0.09, 0.25],
    [0.09, 0.47], [-0.09, 0.47],
])  # fmt: skip
FEET = BODY[[15, 15, 15, 16, 16, 16]] + [[0.04, 0.03], [0.07, 0.03], [-0.01, 0.03]] * 2
_FACE_ANGLES = np.linspace(0, 2 * np.pi, 68, endpoint=False)
FACE = np.stack([0.05 * np.cos(_FACE_ANGLES), -0.42 + 0.06 * np.sin(_FACE_ANGLES)], 1)
_HAND = np.concatenate([
    [[0.0, 0.0]],
    *[np.stack([np.full(4, 0.012 * (f - 2)), 0.012 * np.arange(1, 5)], 1) for f in range(5)],
])  # fmt: skip
LEFT_ARM = [7, 9]  # elbow, wrist (image-right side)
RIGHT_ARM = [8, 10]


@dataclass
class Person:
    """A walker: where it starts (pixels), velocity (px/s), height (px), arm swing."""

    start: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    height: float = 120.0
    swing_hz: float = 1.0
    swing_deg: float = 50.0
    phase: float = 0.0

    def at(self, t: float) -> np.ndarray:
        """(133,2) ground-truth keypoints at time t seconds."""
        body = BODY.copy()
        angle = np.deg2rad(self.swing_deg) * np.sin(2 * np.pi * self.swing_hz * t + self.phase)
        for arm, shoulder, sign in ((LEFT_ARM, 5, 1), (RIGHT_ARM, 6, -1)):
            c, s = np.cos(sign * angle), np.sin(sign * angle)
            rel = body[arm] - body[shoulder]
            body[arm] = body[shoulder] + rel @ np.array([[c, s], [-s, c]])
        points = np.concatenate([
            body, FEET + (body[[15] * 3 + [16] * 3] - BODY[[15] * 3 + [16] * 3]), FACE,
            _HAND + body[9], _HAND * [-1, 1] + body[10],
        ])  # fmt: skip
        centre = np.array(self.start) + np.array(self.velocity) * t
        return points * self.height + centre


def box_of(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = 0.05 * (hi - lo)
    return np.concatenate([lo - pad, hi + pad])


# Noise in pixels: body 3, face 1.5, hands 3.
NOISE = np.select([np.arange(133) < 23, np.arange(133) < 91], [3.0, 1.5], 3.0)


def observe(
    truth: list[np.ndarray], rng: np.random.Generator, size=(640, 360), noise=NOISE,
    dropped: set[tuple[int, int]] = frozenset(),
) -> tuple[PoseFrame, np.ndarray]:  # fmt: skip
    """What a detector + pose model would report: noisy points, scores ~0.9, in shuffled
    order; points in `dropped` ((person, keypoint) pairs) get a low score and a wild place."""
    order = rng.permutation(len(truth))
    kps, scores, boxes = [], [], []
    for p in order:
        points = truth[p] + rng.normal(0, 1, truth[p].shape) * noise[:, None]
        score = rng.uniform(0.7, 1.0, schema.NUM_KEYPOINTS).astype(np.float32)
        for person, k in dropped:
            if person == p:
                score[k] = 0.05
                points[k] += rng.normal(0, 40, 2)
        kps.append(points)
        scores.append(score)
        boxes.append(box_of(truth[p]) + rng.normal(0, 2, 4))
    return PoseFrame(
        np.array(kps).reshape(-1, 133, 2), np.array(scores).reshape(-1, 133),
        np.array(boxes).reshape(-1, 4), np.full(len(truth), 0.9), size[0], size[1],
    ), order  # fmt: skip


def id_switches(truth_ids: list[np.ndarray], track_ids: list[np.ndarray]) -> int:
    """How often a true person's track id changes from one sighting to the next, plus
    sightings whose id another true person holds in the same frame."""
    last: dict[int, int] = {}
    switches = 0
    for truth, tracks in zip(truth_ids, track_ids):
        switches += len(tracks) - len(set(tracks.tolist()))
        for person, track in zip(truth.tolist(), tracks.tolist()):
            switches += person in last and last[person] != track
            last[person] = track
    return switches
