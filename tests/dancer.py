"""Synthetic whole-body dancers with known proportions and motion, for the retargeting tests
and bench/retarget.py.

A `Body` is a set of bone lengths in pixels; a pose gives each bone its direction in the
image and how far it turns towards the camera (it then shows length·cos(turn)). The points
follow from a root by adding bone vectors, so every frame's true lengths, directions and
foreshortening are known. The bones are listed here on their own (not taken from the
library) so that the tests check the library's tree against an independent one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from comfyui_dwpose.result import PoseFrame

NECK = 133
# (parent, child, Body field, rest direction in degrees: 0 = image right, 90 = down).
# "Left" points (odd COCO indices) are on the image's right: the dancer faces the camera.
SEGMENTS = (
    (NECK, 5, "shoulder", 0), (NECK, 6, "shoulder", 180), (NECK, 0, "head", -90),
    (0, 1, "eye", -60), (0, 2, "eye", -120), (1, 3, "ear", 10), (2, 4, "ear", 170),
    (5, 7, "upper_arm", 80), (7, 9, "forearm", 85), (6, 8, "upper_arm", 100),
    (8, 10, "forearm", 95), (NECK, 11, "torso", 80), (NECK, 12, "torso", 100),
    (11, 13, "thigh", 90), (13, 15, "shin", 90), (12, 14, "thigh", 90), (14, 16, "shin", 90),
    (15, 17, "toe", 30), (17, 18, "toes", 0), (15, 19, "heel", 95),
    (16, 20, "toe", 150), (20, 21, "toes", 180), (16, 22, "heel", 85),
)  # fmt: skip
LIMBS = tuple((a, b) for a, b, _, _ in SEGMENTS)
FEET = (15, 17, 18, 19), (16, 20, 21, 22)  # left, right: ankle, toes, heel


def _hand_shape() -> np.ndarray:
    """21 hand points, wrist at 0, along +x; the four knuckles (5, 9, 13, 17) at distance 1."""
    points = [np.zeros(2)]
    for finger, (angle, first, steps) in enumerate(
        [(-50, 0.35, (0.35, 0.3, 0.25)), (-15, 1, (0.45, 0.3, 0.25)), (-5, 1, (0.5, 0.3, 0.25)),
         (5, 1, (0.45, 0.3, 0.25)), (15, 1, (0.35, 0.25, 0.2))]
    ):  # fmt: skip
        direction = np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))])
        point = first * direction
        points.append(point)
        for step in steps:
            point = point + step * direction
            points.append(point)
        assert finger == 0 or np.isclose(np.linalg.norm(points[1 + 4 * finger]), 1.0)
    return np.array(points)


def _face_shape() -> np.ndarray:
    """68 face points around the nose, RMS radius 1 about their centre."""
    jaw = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    inner = np.linspace(0, 2 * np.pi, 51, endpoint=False)
    points = np.concatenate([
        np.stack([np.cos(jaw) * 1.0, np.sin(jaw) * 1.2 - 0.2], 1),
        np.stack([np.cos(inner) * 0.6, np.sin(inner) * 0.5 - 0.1], 1),
    ])  # fmt: skip
    centred = points - points.mean(axis=0)
    return centred / np.sqrt((centred**2).sum(axis=1).mean()) + [0.0, 0.15]


HAND = _hand_shape()
FACE = _face_shape()


@dataclass(frozen=True)
class Body:
    """Bone lengths in pixels; `hand` is the palm (wrist to knuckles), `face` its RMS radius."""

    shoulder: float
    head: float
    eye: float
    ear: float
    upper_arm: float
    forearm: float
    torso: float
    thigh: float
    shin: float
    toe: float
    toes: float
    heel: float
    hand: float
    face: float

    def length(self, limb: tuple[int, int]) -> float:
        return getattr(self, next(field for a, b, field, _ in SEGMENTS if (a, b) == limb))


ADULT = Body(
    shoulder=40, head=55, eye=12, ear=14, upper_arm=66, forearm=56, torso=120, thigh=96,
    shin=92, toe=30, toes=12, heel=18, hand=20, face=22,
)  # fmt: skip
# A child / anime figure: big head, short limbs, long forearms for its size.
CHILD = Body(
    shoulder=27, head=50, eye=11, ear=12, upper_arm=38, forearm=37, torso=78, thigh=54,
    shin=50, toe=19, toes=8, heel=12, hand=15, face=27,
)  # fmt: skip


@dataclass
class Pose:
    """Bone directions (degrees) and turns towards the camera (degrees), by child index."""

    angle: dict[int, float]
    turn: dict[int, float]
    head_tilt: float = 0.0  # the face's rotation, degrees


def rest_pose() -> Pose:
    return Pose({b: float(a) for _, b, _, a in SEGMENTS}, {})


def place(body: Body, pose: Pose, root: int, at) -> np.ndarray:
    """(134,2) points with `root` (e.g. NECK, or a planted ankle) at `at`: bone vectors
    added outwards from the root in both directions along the tree."""
    vectors = {}
    for a, b, field, _ in SEGMENTS:
        angle, turn = np.deg2rad(pose.angle[b]), np.deg2rad(pose.turn.get(b, 0.0))
        vectors[(a, b)] = (
            getattr(body, field) * np.cos(turn) * np.array([np.cos(angle), np.sin(angle)])
        )
    points = {root: np.asarray(at, np.float64)}
    while len(points) < len(SEGMENTS) + 1:
        for (a, b), v in vectors.items():
            if a in points and b not in points:
                points[b] = points[a] + v
            elif b in points and a not in points:
                points[a] = points[b] - v
    out = np.zeros((134, 2))
    for k, p in points.items():
        out[k] = p
    tilt = np.deg2rad(pose.head_tilt)
    rotate = np.array([[np.cos(tilt), np.sin(tilt)], [-np.sin(tilt), np.cos(tilt)]])
    out[23:91] = out[0] + body.face * FACE @ rotate
    for hand, wrist, elbow in ((slice(91, 112), 9, 7), (slice(112, 133), 10, 8)):
        d = out[wrist] - out[elbow]
        a = np.arctan2(d[1], d[0])
        along = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        out[hand] = out[wrist] + body.hand * HAND @ along
    return out


def frame_of(people: list[np.ndarray], size=(640, 480), ids=None, scores=None) -> PoseFrame:
    """A PoseFrame of people given as (134,2) points (the neck is dropped), all seen."""
    kps = np.array([p[:133] for p in people]).reshape(-1, 133, 2)
    sc = np.ones((len(people), 133)) if scores is None else np.asarray(scores)
    boxes = [np.concatenate([p[:133].min(0) - 5, p[:133].max(0) + 5]) for p in people]
    return PoseFrame(
        kps, sc.reshape(-1, 133), np.reshape(boxes, (-1, 4)), np.full(len(people), 0.9),
        size[0], size[1], None if ids is None else np.asarray(ids),
    )  # fmt: skip


# --------------------------------------------------------------------------- motions


def dance_pose(t: float, turn_forearm: float = 0.0) -> Pose:
    """A dance at time t seconds: swaying torso, waving arms, stepping legs, nodding head."""
    pose = rest_pose()
    a = pose.angle
    sway = 8 * np.sin(2 * np.pi * 0.5 * t)
    for child in (5, 6, 0, 11, 12):
        a[child] += sway
    for child in (1, 2, 3, 4):
        a[child] += sway + 10 * np.sin(2 * np.pi * 0.7 * t)
    a[7] += -70 * np.sin(2 * np.pi * 0.8 * t) - 30
    a[9] += -90 * np.sin(2 * np.pi * 0.8 * t + 0.6) - 40
    a[8] += 60 * np.sin(2 * np.pi * 0.6 * t + 1.0) + 30
    a[10] += 80 * np.sin(2 * np.pi * 0.6 * t + 1.7) + 20
    a[13] -= 20 * np.sin(2 * np.pi * 0.5 * t) ** 2
    a[15] += 15 * np.sin(2 * np.pi * 0.5 * t) ** 2
    a[14] += 20 * np.cos(2 * np.pi * 0.5 * t) ** 2
    a[16] -= 15 * np.cos(2 * np.pi * 0.5 * t) ** 2
    pose.head_tilt = sway + 10 * np.sin(2 * np.pi * 0.7 * t)
    pose.turn[9] = turn_forearm
    return pose


def dance(body: Body, frames: int = 60, fps: float = 30.0, turn: bool = False) -> list[np.ndarray]:
    """The dancer moving in the image plane (its neck travels too); with `turn`, its left
    forearm turns towards the camera over the second half (0 to 60 degrees)."""
    out = []
    for i in range(frames):
        t = i / fps
        turning = 60.0 * max(0.0, (i - frames / 2) / (frames / 2 - 1)) if turn else 0.0
        neck = (320 + 60 * np.sin(2 * np.pi * 0.4 * t), 150 + 12 * np.sin(2 * np.pi * 0.9 * t))
        out.append(place(body, dance_pose(t, turning), NECK, neck))
    return out


def side_steps(
    body: Body, steps: int = 4, frames_per_step: int = 24
) -> tuple[list[np.ndarray], list[int]]:
    """Weight on one foot while the other kicks out and comes back, then the other way.

    The standing foot is planted (its ankle, heel and toes do not move) and bends its knee;
    the torso sways over it. Between steps both legs hang straight, both feet on the floor.
    Returns the frames' points and, per frame, the standing foot (0 left, 1 right).
    """
    out, standing = [], []
    ankle = np.array([340.0, 400.0])
    for step in range(steps):
        support = step % 2
        stand, kick = (15, 16) if support == 0 else (16, 15)
        side = 1 if support == 0 else -1  # the kicking leg goes out to its own side
        for i in range(frames_per_step):
            e = np.sin(np.pi * i / frames_per_step) ** 2
            t = (step * frames_per_step + i) / 30.0
            pose = dance_pose(t)
            a = pose.angle
            for child in (13, 14, 15, 16):
                a[child] = 90.0
            for child in (5, 6, 0, 11, 12, 1, 2, 3, 4):
                a[child] = rest_pose().angle[child] + 6 * e * side
            a[stand - 2] = 90 - 12 * e * side  # standing thigh leans, its knee bends
            a[stand] = 90 + 12 * e * side
            a[kick - 2] = 90 + 45 * e * side  # kicking leg swings out and up
            a[kick] = 90 + 30 * e * side
            pose.head_tilt = 6 * e * side
            points = place(body, pose, stand, ankle)
            out.append(points)
            standing.append(support)
        # After the step the other foot takes the weight where it landed.
        end = place(body, _straight(dance_pose((step + 1) * frames_per_step / 30.0)), stand, ankle)
        ankle = end[kick]
    return out, standing


def _straight(pose: Pose) -> Pose:
    for child in (13, 14, 15, 16):
        pose.angle[child] = 90.0
    for child in (5, 6, 0, 11, 12, 1, 2, 3, 4):
        pose.angle[child] = rest_pose().angle[child]
    return pose


def noisy(sequence: list[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [p + rng.normal(0, sigma, p.shape) for p in sequence]


def shrink(body: Body, factor: float) -> Body:
    return replace(body, **{f: getattr(body, f) * factor for f in body.__dataclass_fields__})


# ------------------------------------------------------------------------- measuring


def limb_vectors(points: np.ndarray) -> np.ndarray:
    """(len(LIMBS), 2) child minus parent; the neck is the shoulders' midpoint."""
    points = np.asarray(points)[:133]
    points = np.concatenate([points, points[[5, 6]].mean(0, keepdims=True)])
    return np.array([points[b] - points[a] for a, b in LIMBS])


def palm_size(points: np.ndarray, hand: slice) -> float:
    """Mean distance from the hand's wrist to its four knuckles."""
    hand_points = np.asarray(points)[hand]
    return float(np.linalg.norm(hand_points[[5, 9, 13, 17]] - hand_points[0], axis=1).mean())


def face_size(points: np.ndarray) -> float:
    """RMS radius of the 68 face points about their centre."""
    face = np.asarray(points)[23:91]
    return float(np.sqrt(((face - face.mean(0)) ** 2).sum(1).mean()))


def acceleration(sequence: list[np.ndarray]) -> np.ndarray:
    """(23,) mean |x[t+1] - 2x[t] + x[t-1]| over the frames of each body and foot point, px."""
    x = np.array([np.asarray(p)[:23] for p in sequence])
    return np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean(axis=0)


def part_ratios(reference: Body, dancer: Body) -> np.ndarray:
    """(23,) the size ratio of the part each body and foot point is on: the reference's
    length of the bone into the point over the dancer's."""
    into = {b: (a, b) for a, b in LIMBS}
    return np.array([reference.length(into[k]) / dancer.length(into[k]) for k in range(23)])


def body_scale(reference: Body, dancer: Body) -> float:
    """The reference's limb lengths summed over the dancer's: the size ratio of the bodies."""
    return sum(reference.length(limb) for limb in LIMBS) / sum(
        dancer.length(limb) for limb in LIMBS
    )
