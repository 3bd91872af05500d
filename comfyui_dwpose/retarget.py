"""Pose retargeting: a dance moved onto a reference character's proportions.

    out = retarget(frames, reference)       # driving PoseFrames, one reference PoseFrame

Animation models copy the proportions of the skeleton they are given, so a tall dancer's
moves drawn unchanged onto a child or an anime figure give limbs that do not fit. Here each
driving person is redrawn with a reference person's sizes, on the reference's canvas:

- "bones": every limb of the tree (skeleton.py) is scaled by one ratio for the whole
  sequence, the reference's length over the dancer's typical length, and keeps the driving
  frame's direction, so foreshortening is kept. Hands scale about their wrists by the ratio
  of the palms (of the forearms when a palm was never seen) and the face about the nose by
  the ratio of the faces. "global": one scale for everything (all limb lengths together).
- Placement: the first frame's anchor lands on the reference's (the neck, the mid-hip, or
  "ground": the lowest foot points on the reference's foot line); afterwards the anchor
  moves as the driving one does, times the body scale. Under "ground" the body is moved
  frame to frame so that the foot carrying the weight (the lowest, softly) moves exactly as
  the driving one, scaled: a planted foot stays planted; vertically the lowest foot keeps
  its scaled height above the foot line, so the figure never drifts off the floor.
- Unseen points keep their scores (they stay unseen) and every point, seen or not, hangs
  from its nearest seen ancestor, so a lost elbow neither moves the hand nor breaks it.

Ratios are constant over a sequence (`retarget`), so retargeting adds no jitter; frame by
frame (`Retargeter`) they come from the frames seen so far, or are given (`measure`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from . import schema
from .result import DEFAULT_THRESHOLD, PoseFrame
from .skeleton import (
    BODY_POINTS,
    BONE_INTO,
    BONES,
    FEET,
    FOOT_POINTS,
    HANDS,
    LCA,
    LEVELS,
    NECK,
    PARENT,
    Proportions,
    SizeSamples,
    with_neck,
)

MODES = ("bones", "global")
ANCHORS = ("auto", "neck", "hips", "ground")
# A foot this much lower than another (in neck-to-ankle heights) carries e^-1 of its weight.
GROUND_SOFTNESS = 0.01
# Where the tree is rooted when the neck is unseen: the torso first, then by depth.
ROOT_ORDER = np.array(
    [NECK, 5, 6, 11, 12, *[k for level in LEVELS[1:] for k in level if k not in (5, 6, 11, 12)]]
)
HIPS = np.array([schema.LEFT_HIP, schema.RIGHT_HIP])
FOREARM = BONES.index((7, 9))
HEAD_BONES = [BONES.index(b) for b in ((0, 1), (0, 2), (1, 3), (2, 4))]
HEIGHT_BONES = [BONES.index(b) for b in ((NECK, 11), (11, 13), (13, 15))]  # neck to ankle


def retarget(
    driving: Sequence[PoseFrame],
    reference: PoseFrame,
    *,
    mode: str = "bones",
    anchor: str = "auto",
    person: int | Sequence[int] | None = None,
    reference_person: int | Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[PoseFrame]:
    """The driving frames' people redrawn with the reference person's proportions.

    driving: a video's frames. person: the track id(s) of the people to move (their
        `track_ids`, e.g. from `temporal.track_poses`); None: the largest one (over the whole
        sequence when tracked, else in each frame). Other people are left out.
    reference: one frame (e.g. the character image's pose); its canvas becomes the output's.
        reference_person: its index (one per driving person, or one for all); None: the
        largest.
    mode: "bones" or "global"; anchor: "auto" (ground when both show feet, else neck),
        "neck", "hips" or "ground" (see the module's description).
    threshold: keypoint score above which a point counts as seen.
    """
    frames = list(driving)
    if person is None and _tracked(frames):
        person = main_track(frames)
    people = _people(person)
    proportions = [measure(frames, p, threshold) for p in people]
    mover = Retargeter(
        reference, mode=mode, anchor=anchor, person=person, reference_person=reference_person,
        threshold=threshold, proportions=proportions,
    )  # fmt: skip
    return [mover(frame) for frame in frames]


def measure(
    frames: Iterable[PoseFrame], person: int | None = None, threshold: float = DEFAULT_THRESHOLD
) -> Proportions:
    """One person's typical sizes over frames (track id `person`; None: the largest in each)."""
    samples = SizeSamples()
    for frame in frames:
        index = _find(frame, person)
        if index is not None:
            samples.add(*with_neck(frame.keypoints[index], frame.scores[index], threshold))
    return samples.proportions()


def main_track(frames: Sequence[PoseFrame]) -> int | None:
    """The track id with the largest box area summed over the frames: the main dancer."""
    total: dict[int, float] = {}
    for frame in frames:
        if frame.track_ids is not None:
            for track, area in zip(frame.track_ids.tolist(), _areas(frame.boxes).tolist()):
                total[track] = total.get(track, 0.0) + area
    return max(total, key=total.__getitem__) if total else None


class Retargeter:
    """Retargeting frame by frame (streams): `Retargeter(reference)(frame) -> PoseFrame`.

    Options as `retarget`. Without `proportions` each person's typical sizes come from the
    frames seen so far (so early frames' ratios may still move); give them (`measure` on a
    calibration clip; one Proportions for everyone, or one per person) to fix them.
    """

    def __init__(
        self,
        reference: PoseFrame,
        *,
        mode: str = "bones",
        anchor: str = "auto",
        person: int | Sequence[int] | None = None,
        reference_person: int | Sequence[int] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        proportions: Proportions | Sequence[Proportions] | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
        if not isinstance(reference, PoseFrame):
            raise TypeError(f"reference must be a PoseFrame, got {type(reference).__name__}")
        if len(reference) == 0:
            raise ValueError("the reference pose shows nobody: nothing to retarget onto")
        people = _people(person)
        references = _reference_people(reference_person, reference, len(people))
        if proportions is None or isinstance(proportions, Proportions):
            proportions = [proportions] * len(people)
        if len(proportions) != len(people):
            raise ValueError(f"{len(proportions)} proportions for {len(people)} people")
        self.width, self.height = reference.width, reference.height
        self._movers = [
            _Mover(track, _Body(reference, r, threshold), mode, anchor, threshold, given)
            for track, r, given in zip(people, references, proportions)
        ]

    def __call__(self, frame: PoseFrame) -> PoseFrame:
        keypoints, scores, boxes, box_scores, ids = [], [], [], [], []
        for mover in self._movers:
            index = _find(frame, mover.track)
            if index is None:
                continue
            points, box = mover.step(
                frame.keypoints[index], frame.scores[index], frame.boxes[index]
            )
            keypoints.append(points)
            scores.append(frame.scores[index])
            boxes.append(box)
            box_scores.append(frame.box_scores[index])
            if frame.track_ids is not None:
                ids.append(frame.track_ids[index])
        n = len(keypoints)
        return PoseFrame(
            np.reshape(keypoints, (n, schema.NUM_KEYPOINTS, 2)),
            np.reshape(scores, (n, schema.NUM_KEYPOINTS)), np.reshape(boxes, (n, 4)),
            np.reshape(box_scores, n), self.width, self.height,
            None if frame.track_ids is None else np.array(ids, np.int64),
        )  # fmt: skip


# ------------------------------------------------------------------------------ scales


@dataclass
class _Scales:
    """What one driving person is multiplied by to become one reference person."""

    edge: np.ndarray  # (134,) ratio of the edge into each point (the neck: 1)
    cum_w: np.ndarray  # (134,) the dancer's typical lengths summed from the neck to each point
    cum_rw: np.ndarray  # (134,) the same, each length times its ratio
    body: float  # the whole body's ratio: motion and anything unmeasured scale by it
    softness: float  # GROUND_SOFTNESS in the dancer's pixels

    @classmethod
    def between(cls, ref: Proportions, drv: Proportions, mode: str) -> _Scales:
        bones = ref.bones / drv.bones
        known = np.isfinite(bones)
        if known.any():
            body = ref.bones[known].sum() / drv.bones[known].sum()
        else:  # no limb seen in both: the hands or the face, else 1
            parts = [r for r in (ref.hand / drv.hand, ref.face / drv.face) if np.isfinite(r)]
            body = float(np.mean(parts)) if parts else 1.0
        bones = np.where(known, bones, body)
        hand, face = ref.hand / drv.hand, ref.face / drv.face
        if not np.isfinite(hand):
            hand = bones[FOREARM]
        if not np.isfinite(face):
            head = np.array(HEAD_BONES)[known[HEAD_BONES]]
            face = ref.bones[head].sum() / drv.bones[head].sum() if len(head) else body
        # Each edge's typical driving length (the reference's, unscaled, where unseen).
        lengths = np.where(np.isfinite(drv.bones), drv.bones, ref.bones / body)
        hand_length = drv.hand if np.isfinite(drv.hand) else ref.hand / body
        face_length = drv.face if np.isfinite(drv.face) else ref.face / body
        edge, weight = np.ones(len(PARENT)), np.full(len(PARENT), np.nan)
        into = BONE_INTO >= 0
        edge[into], weight[into] = bones[BONE_INTO[into]], lengths[BONE_INTO[into]]
        for part in HANDS:
            edge[part], weight[part] = hand, hand_length
        edge[schema.FACE], weight[schema.FACE] = face, face_length
        if mode == "global":
            edge[:] = body
        known_weight = weight[np.isfinite(weight)]
        weight[~np.isfinite(weight)] = known_weight.mean() if len(known_weight) else 1.0
        cum_w, cum_rw = np.zeros(len(PARENT)), np.zeros(len(PARENT))
        for level in LEVELS[1:]:
            cum_w[level] = cum_w[PARENT[level]] + weight[level]
            cum_rw[level] = cum_rw[PARENT[level]] + weight[level] * edge[level]
        return cls(edge, cum_w, cum_rw, float(body), _softness(drv))

    def path_ratio(self, a: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The ratio for the vectors from points a to points k along the tree: their edges'
        ratios weighted by the edges' lengths (a hidden elbow's arm scales as a whole)."""
        lca = LCA[a, k]
        w = self.cum_w[a] + self.cum_w[k] - 2 * self.cum_w[lca]
        rw = self.cum_rw[a] + self.cum_rw[k] - 2 * self.cum_rw[lca]
        return np.where(w > 0, rw / np.where(w > 0, w, 1.0), self.body)


# ------------------------------------------------------------------------------ people


class _Body:
    """The reference person: points, sizes, where it stands."""

    def __init__(self, frame: PoseFrame, index: int, threshold: float):
        self.points, self.seen = with_neck(frame.keypoints[index], frame.scores[index], threshold)
        self.width, self.height = frame.width, frame.height
        samples = SizeSamples()
        samples.add(self.points, self.seen)
        self.proportions = samples.proportions()
        self.softness = _softness(self.proportions)

    def shows_feet(self) -> bool:
        return bool(self.seen[FOOT_POINTS].any())


class _Mover:
    """One driving person (a track id, or the largest) moved onto one reference person."""

    def __init__(
        self, track: int | None, body: _Body, mode: str, anchor: str, threshold: float,
        proportions: Proportions | None,
    ):  # fmt: skip
        self.track, self.body, self.mode, self.anchor, self.threshold = (
            track, body, mode, anchor, threshold,
        )  # fmt: skip
        self.samples = SizeSamples() if proportions is None else None
        self.scales = (
            None if proportions is None else _Scales.between(body.proportions, proportions, mode)
        )
        self.previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # points, seen, out
        self.ground: tuple[float, float] | None = None  # foot line: output y, driving y

    def step(
        self, keypoints: np.ndarray, scores: np.ndarray, box: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """This frame's person retargeted: keypoints (133,2) and box on the reference canvas."""
        points, seen = with_neck(keypoints, scores, self.threshold)
        scales = self.scales
        if self.samples is not None:
            self.samples.add(points, seen)
            scales = _Scales.between(self.body.proportions, self.samples.proportions(), self.mode)
        rel = _shape(points, seen, scales)
        out = rel + self._place(points, seen, rel, scales)
        self.previous = (points, seen, out)
        return out[:NECK], _box(box, points, out, seen, scales.body)

    def _place(self, points, seen, rel, scales: _Scales) -> np.ndarray:
        """Where the tree's root goes: the anchor's rule, then the ground's height."""
        if self.previous is None:
            if self.anchor == "auto":
                feet = self.body.shows_feet() and seen[FOOT_POINTS].any()
                self.anchor = "ground" if feet else "neck"
            place = self._first(points, seen, rel, scales)
        else:
            place = self._follow(points, seen, rel, scales)
            if place is None:  # nothing seen in both frames: start again on the reference
                place = self._first(points, seen, rel, scales)
        stance = _stance(points, seen, scales.softness)
        if self.anchor == "ground" and stance:
            centre, ours = _on_feet(points[:, 1], stance), _on_feet(rel[:, 1], stance)
            if self.ground is None:
                self.ground = (float(ours + place[1]), float(centre))
            line, driving_line = self.ground
            place[1] = line + scales.body * (centre - driving_line) - ours
        return place

    def _first(self, points, seen, rel, scales: _Scales) -> np.ndarray:
        """The first frame: the anchor on the reference's, else the points both show on theirs."""
        body = self.body
        stance = _stance(points, seen, scales.softness)
        theirs = _stance(body.points, body.seen, body.softness)
        if self.anchor == "ground" and stance and theirs:
            # The feet's middle over theirs, the lowest foot point on their lowest.
            x = _on_feet(body.points[:, 0], theirs) - _on_feet(rel[:, 0], stance)
            feet, their_feet = FOOT_POINTS[seen[FOOT_POINTS]], FOOT_POINTS[body.seen[FOOT_POINTS]]
            ours = _lowest(points[feet, 1], scales.softness) @ rel[feet, 1]
            y = _lowest(body.points[their_feet, 1], body.softness) @ body.points[their_feet, 1]
            return np.array([x, y - ours])
        anchor = {"neck": [NECK], "hips": HIPS, "ground": []}[self.anchor]
        if len(anchor) and (seen[anchor] & body.seen[anchor]).all():
            return (body.points[anchor] - rel[anchor]).mean(axis=0)
        common = BODY_POINTS[seen[BODY_POINTS] & body.seen[BODY_POINTS]]
        if len(common):
            return (body.points[common] - rel[common]).mean(axis=0)
        theirs = body.points[BODY_POINTS[body.seen[BODY_POINTS]]]
        centre = theirs.mean(axis=0) if len(theirs) else np.array([body.width, body.height]) / 2
        return centre - rel[seen].mean(axis=0) if seen.any() else centre

    def _follow(self, points, seen, rel, scales: _Scales) -> np.ndarray | None:
        """Later frames: the anchor points seen in both frames move as the driving ones,
        scaled (else all body points seen in both do); None when none is."""
        last_points, last_seen, last_out = self.previous
        both = seen & last_seen
        moved = last_out + scales.body * (points - last_points) - rel  # the root, per point
        if self.anchor == "ground":
            stance = _stance(points, both, scales.softness)
            if stance:
                return _on_feet(moved, stance)
        else:
            anchor = np.array([NECK]) if self.anchor == "neck" else HIPS
            if both[anchor].any():
                return moved[anchor[both[anchor]]].mean(axis=0)
        common = BODY_POINTS[both[BODY_POINTS]]
        return moved[common].mean(axis=0) if len(common) else None


def _shape(points: np.ndarray, seen: np.ndarray, scales: _Scales) -> np.ndarray:
    """The retargeted person relative to its root (134,2): each point at its nearest seen
    ancestor plus the driving vector between them, times the path's ratio. The root is the
    neck, or the first seen point of ROOT_ORDER; points with no seen ancestor hang from it."""
    nearest = np.full(len(PARENT), -1)
    for level in LEVELS[1:]:
        parent = PARENT[level]
        nearest[level] = np.where(seen[parent], parent, nearest[parent])
    shown = ROOT_ORDER[seen[ROOT_ORDER]]
    root = shown[0] if len(shown) else NECK
    nearest[nearest < 0] = root
    nearest[root] = root
    ratio = scales.path_ratio(nearest, np.arange(len(PARENT)))
    rel = np.zeros_like(points)
    for level in LEVELS:  # a seen ancestor is shallower; the root's rel is 0 from the start
        k = level[level != root]
        a = nearest[k]
        rel[k] = rel[a] + ratio[k, None] * (points[k] - points[a])
    return rel


# ----------------------------------------------------------------------------- helpers


def _stance(
    points: np.ndarray, usable: np.ndarray, softness: float
) -> list[tuple[np.ndarray, float]]:
    """The feet with usable points, each with its share of the weight: the lower foot (by
    its lowest point) carries it, softly. Whole feet, not single points, carry it so that
    a planted foot's points average their noise."""
    feet = [foot[usable[foot]] for foot in FEET]
    feet = [foot for foot in feet if len(foot)]
    if not feet:
        return []
    weights = _lowest(np.array([points[foot, 1].max() for foot in feet]), softness)
    return list(zip(feet, weights.tolist()))


def _on_feet(values: np.ndarray, stance: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """The weighted mean over the feet of each foot's mean of `values`."""
    return sum(weight * values[foot].mean(axis=0) for foot, weight in stance)


def _softness(proportions: Proportions) -> float:
    """GROUND_SOFTNESS in this person's pixels (1 px when its legs were never seen)."""
    height = proportions.bones[HEIGHT_BONES].sum()
    return float(GROUND_SOFTNESS * height) if np.isfinite(height) else 1.0


def _lowest(y: np.ndarray, softness: float) -> np.ndarray:
    """Weights (summing to 1) that favour the lowest points (largest y), softly."""
    w = np.exp((y - y.max()) / max(softness, 1e-6))
    return w / w.sum()


def _box(
    box: np.ndarray, points: np.ndarray, out: np.ndarray, seen: np.ndarray, scale: float
) -> np.ndarray:
    """The output's box: around its seen points, with the driving box's margins, scaled."""
    if not seen[:NECK].any():
        return np.zeros(4)
    drv, ret = points[:NECK][seen[:NECK]], out[:NECK][seen[:NECK]]
    margins = box - np.concatenate([drv.min(axis=0), drv.max(axis=0)])
    return np.concatenate([ret.min(axis=0), ret.max(axis=0)]) + scale * margins


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)


def _find(frame: PoseFrame, track: int | None) -> int | None:
    """The index of person `track` (None: the largest) in the frame, or None."""
    if len(frame) == 0:
        return None
    if track is None:
        return int(np.argmax(_areas(frame.boxes)))
    if frame.track_ids is None:
        raise ValueError(
            f"person={track} needs tracked frames (track ids): track them first (dwpose video, "
            "DWPose Track & Smooth, temporal.track_poses), or leave person unset for the largest"
        )
    found = np.flatnonzero(frame.track_ids == track)
    return int(found[0]) if len(found) else None


def _tracked(frames: Sequence[PoseFrame]) -> bool:
    people = [f for f in frames if len(f)]
    return bool(people) and all(f.track_ids is not None for f in people)


def _people(person: int | Sequence[int] | None) -> list[int | None]:
    if person is None or isinstance(person, (int, np.integer)):
        return [None if person is None else int(person)]
    people = [int(p) for p in person]
    if not people or len(set(people)) != len(people):
        raise ValueError(f"person must be a track id or distinct track ids, got {person!r}")
    return people


def _reference_people(
    reference_person: int | Sequence[int] | None, reference: PoseFrame, count: int
) -> list[int]:
    if reference_person is None:
        return [int(np.argmax(_areas(reference.boxes)))] * count
    if isinstance(reference_person, (int, np.integer)):
        indices = [int(reference_person)] * count
    else:
        indices = [int(r) for r in reference_person]
    if len(indices) != count:
        raise ValueError(f"{len(indices)} reference people for {count} driving people")
    for r in indices:
        if not 0 <= r < len(reference):
            raise ValueError(
                f"reference_person {r} is out of range: the reference shows {len(reference)} people"
            )
    return indices
