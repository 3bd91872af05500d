"""The body as a tree, and a person's typical sizes: what retargeting scales.

The tree is OpenPose's skeleton rooted at the neck: the limbs of `schema.BODY_LIMBS` and the
BODY_25-style feet of `schema.FOOT_LIMBS` (parent first), over COCO-WholeBody indices with
the neck, which COCO lacks (the shoulders' midpoint), added as point `NECK`. Each hand hangs
from its body wrist and the face from the nose, as rigid parts scaled as a whole.

Sizes are 2D lengths in pixels: each bone, the palm (wrist to the four knuckles) and the
face (RMS radius of its points). A limb turned towards the camera looks shorter, never
longer, so a person's typical size is a high percentile of the sizes seen over a sequence
(less the share of it that is noise), and left and right take the larger of the two: one
body, two views of it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from . import schema

NECK = schema.NUM_KEYPOINTS  # index of the added neck point
NUM_POINTS = NECK + 1
PERCENTILE = 90  # of the sizes seen: robust to a few bad detections, and to foreshortening
FACE_MIN_POINTS = 60  # of 68: a face measured on fewer seen points would look smaller


def _coco(joint: int) -> int:
    """The COCO-WholeBody index (or NECK) of an OpenPose-18 joint or a foot point (18..23)."""
    if joint >= len(schema.OPENPOSE18_FROM_COCO):
        return schema.FEET.start + joint - len(schema.OPENPOSE18_FROM_COCO)
    coco = schema.OPENPOSE18_FROM_COCO[joint]
    return NECK if coco == schema.NECK else coco


BONES = tuple((_coco(a), _coco(b)) for a, b in schema.BODY_LIMBS + schema.FOOT_LIMBS)
HANDS = (schema.LEFT_HAND, schema.RIGHT_HAND)
WRISTS = (schema.LEFT_WRIST, schema.RIGHT_WRIST)
# Each foot: its ankle, big toe, small toe and heel (left, right).
FEET = tuple(
    np.array([_coco(ankle), *range(schema.FEET.start + 3 * side, schema.FEET.start + 3 * side + 3)])
    for side, ankle in enumerate((schema.OP18_L_ANKLE, schema.OP18_R_ANKLE))
)
FOOT_POINTS = np.concatenate(FEET)
BODY_POINTS = np.array([*range(schema.FEET.stop), NECK])  # body and feet: what places a person


def _parents() -> np.ndarray:
    parent = np.full(NUM_POINTS, -1)
    for a, b in BONES:
        parent[b] = a
    for hand, wrist in zip(HANDS, WRISTS):
        parent[hand] = wrist
    parent[schema.FACE] = schema.NOSE
    assert (parent[:NECK] >= 0).all()
    return parent


PARENT = _parents()
BONE_INTO = np.full(NUM_POINTS, -1)  # the bone ending at each point (-1: hand, face, neck)
BONE_INTO[[b for _, b in BONES]] = np.arange(len(BONES))


def _depths() -> np.ndarray:
    depth = np.zeros(NUM_POINTS, int)
    for k in range(NUM_POINTS):
        j = k
        while PARENT[j] >= 0:
            depth[k], j = depth[k] + 1, PARENT[j]
    return depth


DEPTH = _depths()
LEVELS = tuple(np.flatnonzero(d == DEPTH) for d in range(DEPTH.max() + 1))  # root first


def _lowest_common_ancestors() -> np.ndarray:
    """LCA[a, k]: the deepest point that is a or one of its ancestors, and k or one of k's."""
    line = np.full((NUM_POINTS, len(LEVELS)), -1)  # line[k, d]: k's ancestor at depth d
    for depth, level in enumerate(LEVELS):
        if depth:
            line[level] = line[PARENT[level]]
        line[level, depth] = level
    shared = ((line[:, None] == line[None, :]) & (line[:, None] >= 0)).sum(-1)  # common depths
    return line[np.arange(NUM_POINTS)[:, None], shared - 1]


LCA = _lowest_common_ancestors()

# Sizes, in this order: the bones, the left and right palms, the face.
LEFT_PALM, RIGHT_PALM, FACE_SIZE = len(BONES), len(BONES) + 1, len(BONES) + 2
NUM_SIZES = len(BONES) + 3


def _mirror_sizes() -> np.ndarray:
    side = dict(schema.MIRROR_PAIRS) | {b: a for a, b in schema.MIRROR_PAIRS}
    mirror = [BONES.index((side.get(a, a), side.get(b, b))) for a, b in BONES]
    return np.array([*mirror, RIGHT_PALM, LEFT_PALM, FACE_SIZE])


MIRROR_SIZES = _mirror_sizes()


def with_neck(
    keypoints: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """One person's points (134,2) with the neck appended, and which are seen (134,): a
    score above the threshold; the neck when both shoulders are (OpenPose's rule)."""
    shoulders = [schema.LEFT_SHOULDER, schema.RIGHT_SHOULDER]
    keypoints = np.asarray(keypoints, np.float64)
    seen = np.asarray(scores, np.float64) > threshold
    points = np.concatenate([keypoints, keypoints[shoulders].mean(axis=0, keepdims=True)])
    return points, np.append(seen, seen[shoulders].all())


def sizes(points: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The sizes (NUM_SIZES,) of one person in one frame; NaN where not fully seen."""
    out = np.full(NUM_SIZES, np.nan)
    a, b = np.array(BONES).T
    both = seen[a] & seen[b]
    out[: len(BONES)][both] = np.linalg.norm(points[b[both]] - points[a[both]], axis=1)
    for index, hand in zip((LEFT_PALM, RIGHT_PALM), HANDS):
        palm = hand.start + np.array([0, *schema.HAND_MCPS])
        if seen[palm].all():
            out[index] = np.linalg.norm(points[palm[1:]] - points[palm[0]], axis=1).mean()
    face = points[schema.FACE][seen[schema.FACE]]
    if len(face) >= FACE_MIN_POINTS:
        out[FACE_SIZE] = math.sqrt(((face - face.mean(axis=0)) ** 2).sum(axis=1).mean())
    return out


@dataclass(frozen=True)
class Proportions:
    """A person's typical 2D sizes in pixels, NaN where never seen: `bones` in BONES order,
    `hand` the palm (wrist to knuckles, mean), `face` the RMS radius of the face points."""

    bones: np.ndarray
    hand: float
    face: float


class SizeSamples:
    """The sizes of one person seen so far, frame by frame; `proportions()` summarises them.

    A high percentile alone would also pick the frames where noise made a limb look longer
    (at 1 px of noise a 90th percentile reads a forearm 3% long), so the noise's share of
    it is taken off: the noise is measured on the frame-to-frame changes of each size,
    which a limb's slow turning hardly touches.
    """

    def __init__(self) -> None:
        self._sorted: list[list[float]] = [[] for _ in range(NUM_SIZES)]
        self._changes: list[list[float]] = [[] for _ in range(NUM_SIZES)]
        self._last = np.full(NUM_SIZES, np.nan)

    def add(self, points: np.ndarray, seen: np.ndarray) -> None:
        """One frame of the person (the frames in order: their changes measure the noise)."""
        now = sizes(points, seen)
        for values, changes, size, last in zip(
            self._sorted, self._changes, now.tolist(), self._last.tolist()
        ):
            if not math.isnan(size):
                bisect.insort(values, size)
                if not math.isnan(last):
                    bisect.insort(changes, abs(size - last))
        self._last = now

    def proportions(self) -> Proportions:
        typical = np.array([_typical(v, c) for v, c in zip(self._sorted, self._changes)])
        typical = np.fmax(typical, typical[MIRROR_SIZES])  # one side seen serves both
        return Proportions(
            typical[: len(BONES)], float(typical[LEFT_PALM]), float(typical[FACE_SIZE])
        )


def _typical(values: list[float], changes: list[float]) -> float:
    """The PERCENTILE-th of the sorted sizes less the noise's share (never below their
    median); NaN for none. The noise's deviation comes from the median frame-to-frame
    change, which for independent noise is 0.954 deviations (sqrt(2) times 0.674)."""
    if not values:
        return math.nan
    high = _percentile(values, PERCENTILE)
    if not changes:
        return high
    noise = _percentile(changes, 50) / (math.sqrt(2) * _Z50)
    return max(high - _Z_HIGH * noise, _percentile(values, 50))


_Z50 = NormalDist().inv_cdf(0.75)  # median of |N(0, 1)|
_Z_HIGH = NormalDist().inv_cdf(PERCENTILE / 100)


def _percentile(values: list[float], percent: float) -> float:
    """The percent-th of sorted values (nearest rank)."""
    return values[max(math.ceil(percent / 100 * len(values)), 1) - 1]
