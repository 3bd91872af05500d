"""Video over sequences of `PoseFrame`s: tracking, detector skipping, smoothing, selection.

- `Tracker` gives people stable ids: each track's position is predicted at constant
  velocity, similarity is the mean of box IoU and body OKS, one Hungarian assignment per
  frame decides, and a track unseen for up to `max_age` frames (an occlusion) can still
  take its person back.
- `TrackingEstimator` runs the detector every `detect_every` frames, and at once whenever
  tracking weakens (a person loses its body, two tracks collapse onto one skeleton, nobody
  is tracked, someone was lost in the last `detect_every` frames). On the frames between,
  each person's box comes from its previous keypoints.
- `Smoother` fills short dropouts by interpolation and smooths each track with a One Euro
  filter (Casiez et al., CHI 2012), run forwards and backwards over a bounded look-ahead and
  averaged, which cancels the filter's lag; look-ahead 0 is the causal, streaming form.
- `PersonSelector` keeps everyone, the N largest people, or given track ids.

Scores stay the model's: smoothing moves only points that are seen (score above the
threshold), never blends unseen points into seen ones, and leaves unseen points as they were.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import schema
from .extras import require
from .result import DEFAULT_THRESHOLD, PoseFrame

BODY = 17
SPREAD_PER_MISS = 0.25  # OKS scale growth per frame a track goes unseen
# COCO's per-keypoint OKS sigmas of the 17 body points.
BODY_SIGMAS = np.array([
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
])  # fmt: skip


# ---------------------------------------------------------------------------- similarity


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N,4) with every box in `b` (M,4): (N,M)."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = w * h
    union = _area(a) + _area(b) - inter
    return inter / np.maximum(union, 1e-9)


def body_oks(
    kps_a: np.ndarray, scores_a: np.ndarray, kps_b: np.ndarray, scores_b: np.ndarray,
    boxes_b: np.ndarray, threshold: float = DEFAULT_THRESHOLD, spread: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Object keypoint similarity of the body points (N,M), over points seen in both, with the
    area of `boxes_b` as scale (times `spread` (N,) squared: how uncertain each of `kps_a`
    is); 0 where no point is seen in both."""
    d2 = ((kps_a[:, None, :BODY] - kps_b[None, :, :BODY]) ** 2).sum(-1)
    area = np.maximum(_area(np.asarray(boxes_b, np.float64)), 1.0)[None, :, None]
    if spread is not None:
        area = area * np.asarray(spread, np.float64)[:, None, None] ** 2
    e = np.exp(-d2 / (2 * area * (2 * BODY_SIGMAS) ** 2))
    both = (scores_a[:, None, :BODY] > threshold) & (scores_b[None, :, :BODY] > threshold)
    count = both.sum(-1)
    return np.where(count > 0, (e * both).sum(-1) / np.maximum(count, 1), 0.0)


def keypoint_bounds(
    keypoints: np.ndarray, scores: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray | None:
    """x1y1x2y2 around the seen points of one person, or None with fewer than two seen."""
    seen = scores > threshold
    if seen.sum() < 2:
        return None
    points = keypoints[seen]
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2] - boxes[..., 0]).clip(0) * (boxes[..., 3] - boxes[..., 1]).clip(0)


# ---------------------------------------------------------------------------- tracking


@dataclass
class Track:
    """One person followed through the video; positions in pixels, velocity per frame."""

    id: int
    keypoints: np.ndarray
    scores: np.ndarray
    box: np.ndarray
    box_score: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    # The detector's box around the seen keypoints, per side, in keypoint-box widths and
    # heights: turns later keypoints into the box the detector would have given.
    margins: np.ndarray = field(default_factory=lambda: np.zeros(4))
    misses: int = 0  # frames since the person was last seen

    def shift(self) -> np.ndarray:
        """Predicted motion from the last sighting to the coming frame."""
        return self.velocity * (self.misses + 1)

    def predicted_box(self) -> np.ndarray:
        return self.box + np.tile(self.shift(), 2)

    def next_box(self, threshold: float) -> np.ndarray:
        """The box for the coming frame from the last keypoints (what the detector would say)."""
        return self.box_of(self.keypoints, self.scores, threshold) + np.tile(self.shift(), 2)

    def box_of(self, keypoints: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
        """The detector's box for these keypoints of this person (the last box without them)."""
        bounds = keypoint_bounds(keypoints, scores, threshold)
        if bounds is None:
            return self.box
        size = np.maximum(bounds[2:] - bounds[:2], 1.0)
        return bounds + self.margins * np.tile(size, 2)

    def update(self, frame: PoseFrame, n: int, threshold: float, detected: bool) -> None:
        """Take person `n` of `frame` as this track's new sighting. Motion is measured on
        boxes: the detector's, or between detections the one the keypoints imply."""
        kps, scores = frame.keypoints[n], frame.scores[n]
        box = frame.boxes[n] if detected else self.box_of(kps, scores, threshold)
        move = (_centre(box) - _centre(self.box)) / (self.misses + 1)
        self.velocity = 0.5 * self.velocity + 0.5 * move
        self.keypoints, self.scores = kps, scores
        self.box, self.box_score = box, float(frame.box_scores[n])
        self.misses = 0
        bounds = keypoint_bounds(kps, scores, threshold)
        if detected and bounds is not None:
            size = np.tile(np.maximum(bounds[2:] - bounds[:2], 1.0), 2)
            self.margins = (box - bounds) / size


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


class Tracker:
    """Stable person ids across frames (see the module docstring).

    min_similarity: a track and a person whose similarity (mean of IoU and body OKS, 0-1)
        is below this are never paired.
    max_age: frames a track survives unseen (occlusions, detector misses).
    """

    def __init__(
        self,
        min_similarity: float = 0.2,
        max_age: int = 30,
        threshold: float = DEFAULT_THRESHOLD,
    ):
        self.min_similarity = min_similarity
        self.max_age = max_age
        self.threshold = threshold
        self.tracks: list[Track] = []
        self._next_id = 0
        # scipy's Hungarian solver (the video extra), imported here: not for images alone.
        self._assign = require("scipy.optimize", "tracking").linear_sum_assignment

    def update(self, frame: PoseFrame) -> PoseFrame:
        """Pair a frame's detected people with the tracks; the frame with its `track_ids`."""
        ids = np.zeros(len(frame), np.int64)
        paired_tracks, paired_people = self._match(frame)
        for t, n in zip(paired_tracks, paired_people):
            self.tracks[t].update(frame, n, self.threshold, detected=True)
            ids[n] = self.tracks[t].id
        for track in (self.tracks[t] for t in set(range(len(self.tracks))) - set(paired_tracks)):
            track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        for n in sorted(set(range(len(frame))) - set(paired_people)):
            track = Track(self._next_id, frame.keypoints[n], frame.scores[n], frame.boxes[n], 0.0)
            track.update(frame, n, self.threshold, detected=True)
            self.tracks.append(track)
            ids[n] = track.id
            self._next_id += 1
        return dataclasses.replace(frame, track_ids=ids)

    def follow(self, frame: PoseFrame, ids: Sequence[int]) -> PoseFrame:
        """Take people estimated on the boxes of `ahead()` (same order) as their tracks' sightings."""
        by_id = {t.id: t for t in self.tracks}
        for n, track_id in enumerate(ids):
            by_id[track_id].update(frame, n, self.threshold, detected=False)
        for track in self.tracks:
            if track.id not in set(ids):
                track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        return dataclasses.replace(frame, track_ids=np.asarray(ids, np.int64))

    def ahead(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Ids, boxes (N,4) and box scores of the people seen in the last frame, for the next."""
        seen = [t for t in self.tracks if t.misses == 0]
        boxes = np.array([t.next_box(self.threshold) for t in seen]).reshape(-1, 4)
        return [t.id for t in seen], boxes, np.array([t.box_score for t in seen], np.float32)

    def _match(self, frame: PoseFrame) -> tuple[list[int], list[int]]:
        if not self.tracks or not len(frame):
            return [], []
        boxes = np.array([t.predicted_box() for t in self.tracks])
        kps = np.array([t.keypoints + t.shift() for t in self.tracks])
        scores = np.array([t.scores for t in self.tracks])
        # The longer a track is unseen, the less sure its predicted place.
        spread = 1.0 + SPREAD_PER_MISS * np.array([t.misses for t in self.tracks])
        similarity = 0.5 * box_iou(boxes, frame.boxes) + 0.5 * body_oks(
            kps, scores, frame.keypoints, frame.scores, frame.boxes, self.threshold, spread
        )
        rows, cols = self._assign(similarity, maximize=True)
        keep = similarity[rows, cols] >= self.min_similarity
        return rows[keep].tolist(), cols[keep].tolist()


class TrackingEstimator:
    """Tracked `PoseFrame`s from video frames, with the detector run only when needed.

    estimator: a `DWPose` (needs `__call__` and `pose_on_boxes`).
    detect_every: run the detector on every N-th frame (1: on every frame, the per-frame
        pipeline plus tracking). Between, people are followed from their keypoints.
    min_keypoints: a followed person with fewer seen body points is lost: detect again.
    collapse_oks: two followed people this similar have become one: detect again.
    """

    def __init__(
        self,
        estimator: Any,
        detect_every: int = 8,
        tracker: Tracker | None = None,
        min_keypoints: int = 4,
        collapse_oks: float = 0.7,
    ):
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        self.estimator = estimator
        self.detect_every = detect_every
        self.tracker = tracker or Tracker()
        self.min_keypoints = min_keypoints
        self.collapse_oks = collapse_oks
        self.frames = 0
        self.detections = 0  # frames the detector ran on
        self._since_detection = 0

    def __call__(self, images: Sequence[np.ndarray]) -> list[PoseFrame]:
        """One tracked frame per image, in order. Every-frame detection runs as one batch."""
        if self.detect_every == 1:
            self.frames += len(images)
            self.detections += len(images)
            return [self.tracker.update(f) for f in self.estimator(list(images))]
        return [self._one(image) for image in images]

    def _one(self, image: np.ndarray) -> PoseFrame:
        self.frames += 1
        ids, boxes, box_scores = self.tracker.ahead()
        # Someone just lost (occluded, or gone) is looked for on every frame for a while.
        lost = any(0 < t.misses <= self.detect_every for t in self.tracker.tracks)
        if not ids or lost or self._since_detection + 1 >= self.detect_every:
            return self._detect(image)
        frame = self.estimator.pose_on_boxes([image], [boxes], [box_scores])[0]
        if self._weak(frame):
            return self._detect(image)
        self._since_detection += 1
        return self.tracker.follow(frame, ids)

    def _detect(self, image: np.ndarray) -> PoseFrame:
        self.detections += 1
        self._since_detection = 0
        return self.tracker.update(self.estimator([image])[0])

    def _weak(self, frame: PoseFrame) -> bool:
        seen = (frame.scores[:, :BODY] > self.tracker.threshold).sum(axis=1)
        if (seen < self.min_keypoints).any():
            return True
        if len(frame) < 2:
            return False
        similar = body_oks(
            frame.keypoints, frame.scores, frame.keypoints, frame.scores, frame.boxes,
            self.tracker.threshold,
        )  # fmt: skip
        np.fill_diagonal(similar, 0.0)
        return bool((similar > self.collapse_oks).any())


# ---------------------------------------------------------------------------- smoothing


@dataclass(frozen=True)
class OneEuro:
    """One Euro filter settings: the cutoff rises with speed, so a still point is smoothed
    hard (no jitter) and a fast one lightly (no lag).

    min_cutoff: cutoff at rest, Hz. beta: Hz added per unit of speed, where speed is in
    person heights per second (one setting fits near and far people). d_cutoff: cutoff of
    the speed estimate, Hz.
    """

    min_cutoff: float = 1.0
    beta: float = 1.0
    d_cutoff: float = 1.0


# Body (with feet), face and hands move and jitter differently: each has its own setting.
# Face and hands are smoothed as a shape around their centre ("face", "hands") and a centre
# that moves with the body ("part_centres"): a centre is the mean of many points, so it needs
# little smoothing and follows a swinging hand without lag. Tuned on tests/synthetic.py.
DEFAULT_SMOOTHING = {
    "body": OneEuro(min_cutoff=1.0, beta=8.0, d_cutoff=3.0),
    "face": OneEuro(min_cutoff=0.5, beta=1.0),
    "hands": OneEuro(min_cutoff=0.5, beta=1.0),
    "part_centres": OneEuro(min_cutoff=2.0, beta=20.0, d_cutoff=3.0),
}
PARTS = {
    "body": np.r_[0:23],
    "face": np.r_[schema.FACE],
    "hands": np.r_[schema.LEFT_HAND, schema.RIGHT_HAND],
}


def _alpha(cutoff: np.ndarray, dt: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


class _OneEuroFilter:
    """One Euro filter over the points of one person (see `_local`), vectorised; works in either
    direction of time. A point unseen for `reset_after` seconds starts afresh."""

    def __init__(self, settings: dict[str, OneEuro], reset_after: float):
        centres = schema.NUM_KEYPOINTS + np.arange(len(_GROUPS))
        parts = {**PARTS, "body": np.r_[PARTS["body"], _LOCAL - 1], "part_centres": centres}
        self.min_cutoff, self.beta, self.d_cutoff = np.zeros((3, _LOCAL))
        for part, index in parts.items():
            s = settings[part]
            self.min_cutoff[index], self.beta[index], self.d_cutoff[index] = (
                s.min_cutoff, s.beta, s.d_cutoff,
            )  # fmt: skip
        self.reset_after = reset_after
        self.value = np.zeros((_LOCAL, 2))
        self.speed = np.zeros((_LOCAL, 2))
        self.time = np.full(_LOCAL, np.nan)

    def __call__(
        self, points: np.ndarray, seen: np.ndarray, time: float, scale: float
    ) -> np.ndarray:
        dt = np.abs(time - self.time)
        fresh = ~(dt <= self.reset_after)  # NaN (never seen) is fresh too
        dt = np.where(fresh | (dt <= 0), 1.0, dt)
        speed = self.speed + _alpha(self.d_cutoff, dt)[:, None] * (
            (points - self.value) / dt[:, None] - self.speed
        )
        cutoff = self.min_cutoff + self.beta * np.linalg.norm(speed, axis=1) / max(scale, 1.0)
        value = self.value + _alpha(cutoff, dt)[:, None] * (points - self.value)
        value[fresh], speed[fresh] = points[fresh], 0.0
        self.value[seen], self.speed[seen], self.time[seen] = value[seen], speed[seen], time
        return np.where(seen[:, None], value, points)


def fill_gaps(values: np.ndarray, known: np.ndarray, times: np.ndarray, max_gap: int) -> np.ndarray:
    """Where `known` (T,K) is False for at most `max_gap` frames between two known frames,
    interpolate `values` (T,K,...) linearly in time; True where something was filled."""
    t_count = len(known)
    index = np.broadcast_to(np.arange(t_count)[:, None], known.shape)
    before = np.maximum.accumulate(np.where(known, index, -1), axis=0)
    after = np.minimum.accumulate(np.where(known, index, t_count)[::-1], axis=0)[::-1]
    filled = ~known & (before >= 0) & (after < t_count) & (after - before - 1 <= max_gap)
    if filled.any():
        rows, cols = np.nonzero(filled)
        b, a = before[rows, cols], after[rows, cols]
        w = (times[rows] - times[b]) / (times[a] - times[b])
        w = w.reshape(-1, *([1] * (values.ndim - 2)))
        values[rows, cols] = values[b, cols] * (1 - w) + values[a, cols] * w
    return filled


@dataclass
class _Entry:
    frame: PoseFrame
    time: float
    payload: Any


class Smoother:
    """Gap filling and One Euro smoothing per track, with bounded memory.

    Frames go in with their time (seconds) through `push` and come out, finished, after
    `lookahead` more frames have arrived (`flush` at the end). Each track is filtered
    forwards (carried from frame to frame) and backwards (from the end of the look-ahead),
    and the two are averaged: the backward pass leads as much as the forward one lags.
    lookahead: frames of look-ahead; 0 streams (causal filter, no delay, no gap filling);
        None waits for the whole sequence (offline).
    max_gap: dropouts of at most this many frames (a person missing, or a point unseen)
        are filled by interpolation; filled people get box score 0 and filled points the
        interpolated score. Needs a look-ahead longer than the gap.
    settings: One Euro settings for "body", "face", "hands" and "part_centres" (see
        `DEFAULT_SMOOTHING`); None turns smoothing off.
    """

    def __init__(
        self,
        lookahead: int | None = 20,
        max_gap: int = 8,
        settings: dict[str, OneEuro] | None = DEFAULT_SMOOTHING,
        threshold: float = DEFAULT_THRESHOLD,
        reset_after: float = 0.5,
    ):
        if lookahead is not None and lookahead <= max_gap and max_gap > 0:
            raise ValueError(
                f"filling gaps of {max_gap} frames needs a look-ahead of more frames, got {lookahead}"
            )
        self.lookahead, self.max_gap, self.settings = lookahead, max_gap, settings
        self.threshold, self.reset_after = threshold, reset_after
        self.block = 1 if not lookahead else max(1, lookahead // 3)
        self._pending: list[_Entry] = []
        self._history: list[_Entry] = []  # emitted frames kept to see where a gap began
        self._filters: dict[int, _OneEuroFilter] = {}

    def push(
        self, frame: PoseFrame, time: float, payload: Any = None
    ) -> list[tuple[PoseFrame, Any]]:
        """Add a tracked frame; returns the frames (with their payloads) now finished."""
        if frame.track_ids is None:
            raise ValueError("the Smoother needs tracked frames (track_ids); run a Tracker first")
        self._pending.append(_Entry(frame, float(time), payload))
        if self.lookahead is None or len(self._pending) < self.lookahead + self.block:
            return []
        return self._emit(self.block)

    def flush(self) -> list[tuple[PoseFrame, Any]]:
        """The frames still waiting for look-ahead, finished with what there is."""
        return self._emit(len(self._pending)) if self._pending else []

    def _emit(self, count: int) -> list[tuple[PoseFrame, Any]]:
        window = self._history + self._pending
        start = len(self._history)
        times = np.array([e.time for e in window])
        people: list[list[tuple]] = [[] for _ in range(count)]
        ids = sorted({int(i) for e in window for i in e.frame.track_ids})
        for track_id in ids:
            for j, person in self._track(track_id, window, times, start, count):
                people[j].append(person)
        out = []
        for j, entry in enumerate(self._pending[:count]):
            order = [p for p in people[j] if p[0] is not None]
            order.sort(key=lambda p: p[0])  # detected people in their order, filled ones last
            filled = [p for p in people[j] if p[0] is None]
            frame = _frame_of([p[1:] for p in order + filled], entry.frame)
            out.append((frame, entry.payload))
        self._history = (
            (self._history + self._pending[:count])[-self.max_gap :] if self.max_gap else []
        )
        self._pending = self._pending[count:]
        now = window[start + count - 1].time
        self._filters = {  # forget tracks whose filter would start afresh anyway
            k: f
            for k, f in self._filters.items()
            if now - np.nanmax(f.time, initial=-np.inf) <= self.reset_after
        }
        return out

    def _track(
        self, track_id: int, window: list[_Entry], times: np.ndarray, start: int, count: int
    ) -> Iterator[tuple[int, tuple]]:
        """(frame in block, person) for one track over the block [start, start + count)."""
        t_count = len(window)
        kps = np.zeros((t_count, schema.NUM_KEYPOINTS, 2))
        scores = np.zeros((t_count, schema.NUM_KEYPOINTS), np.float32)
        boxes = np.zeros((t_count, 4))
        box_scores = np.zeros(t_count, np.float32)
        where = np.full(t_count, -1)  # the person's index in each frame, -1 where absent
        for j, entry in enumerate(window):
            hits = np.flatnonzero(entry.frame.track_ids == track_id)
            if len(hits):
                n = where[j] = hits[0]
                f = entry.frame
                kps[j], scores[j] = f.keypoints[n], f.scores[n]
                boxes[j], box_scores[j] = f.boxes[n], f.box_scores[n]
        present = where >= 0
        if self.max_gap:  # a person missing for a few frames: interpolate everything
            data = np.concatenate([kps.reshape(t_count, -1), scores, boxes], axis=1)
            person = fill_gaps(data[:, None], present[:, None], times, self.max_gap)[:, 0]
            size = kps[0].size
            kps = data[:, :size].reshape(kps.shape)
            scores = data[:, size:-4].astype(np.float32)
            boxes = data[:, -4:]
            present = present | person
        seen = present[:, None] & (scores > self.threshold)
        if self.max_gap:
            points = fill_gaps(kps, seen, times, self.max_gap)
            both_scores = scores[:, :, None].astype(np.float64)
            fill_gaps(both_scores, seen, times, self.max_gap)
            scores[points] = both_scores[points, 0]
            seen = seen | points
        smoothed = self._smooth(track_id, kps, seen, present, boxes, times, start, count)
        for j in range(start, start + count):
            if present[j]:
                order = where[j] if where[j] >= 0 else None
                score = box_scores[j] if where[j] >= 0 else 0.0
                yield j - start, (order, smoothed[j - start], scores[j], boxes[j], score, track_id)

    def _smooth(
        self, track_id: int, kps: np.ndarray, seen: np.ndarray, present: np.ndarray,
        boxes: np.ndarray, times: np.ndarray, start: int, count: int,
    ) -> np.ndarray:  # fmt: skip
        block = kps[start : start + count].copy()
        if self.settings is None:
            return block
        scale = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0).max(axis=1)
        # Streaming leaves the body centre as measured: it is nearly noise-free, and a causal
        # filter would only add lag; with look-ahead the lag cancels and it is smoothed too.
        centre_too = self.lookahead != 0
        local = [
            _local(kps[j], seen[j], centre_too) if present[j] else None for j in range(len(kps))
        ]
        forward = self._filters.setdefault(
            track_id, _OneEuroFilter(self.settings, self.reset_after)
        )
        backward = _OneEuroFilter(self.settings, self.reset_after)
        passes = [(forward, range(start, start + count))]
        if self.lookahead != 0:
            passes.append((backward, range(len(kps) - 1, start - 1, -1)))
        for k, (one_euro, frames) in enumerate(passes):
            for j in frames:
                if local[j] is None:
                    continue
                points, points_seen, centre = local[j]
                value = _global(one_euro(points, points_seen, times[j], scale[j]), centre)
                if j < start + count:
                    block[j - start] = value if k == 0 else (block[j - start] + value) / 2
        unseen = ~seen[start : start + count]
        block[unseen] = kps[start : start + count][unseen]
        return block


# Points are smoothed in the person's own frame: body points around the body centre, each
# face and hand point around its part's centre, and those part centres around the body
# centre. The centres are means of many points, so nearly noise-free, and are not filtered:
# moving about the picture adds no lag, and a hand's shape is smoothed apart from its swing.
_CORE = np.r_[0:7, 11, 12]  # head, shoulders, hips: the points that move with the trunk
_GROUPS = (schema.FACE, schema.LEFT_HAND, schema.RIGHT_HAND)
_LOCAL = schema.NUM_KEYPOINTS + len(_GROUPS) + 1  # the points, the groups' centres, the body's


def _local(
    points: np.ndarray, seen: np.ndarray, centre_too: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Points (_LOCAL,2) relative to their centres, which of them are seen, the body centre."""
    if not seen.any():
        return None
    core = seen[_CORE]
    centre = points[_CORE][core].mean(axis=0) if core.any() else points[seen].mean(axis=0)
    local = np.zeros((_LOCAL, 2))
    local_seen = np.zeros(_LOCAL, bool)
    local[: schema.NUM_KEYPOINTS], local_seen[: schema.NUM_KEYPOINTS] = points - centre, seen
    for g, index in enumerate(_GROUPS):
        part_seen = seen[index]
        if part_seen.any():
            part_centre = points[index][part_seen].mean(axis=0)
            local[index] = points[index] - part_centre
            local[schema.NUM_KEYPOINTS + g] = part_centre - centre
            local_seen[schema.NUM_KEYPOINTS + g] = True
    local[-1], local_seen[-1] = centre, centre_too
    return local, local_seen, centre


def _global(local: np.ndarray, centre: np.ndarray) -> np.ndarray:
    points = local[: schema.NUM_KEYPOINTS] + local[-1]
    for g, index in enumerate(_GROUPS):
        points[index] += local[schema.NUM_KEYPOINTS + g]
    return points


def _frame_of(people: list[tuple], like: PoseFrame) -> PoseFrame:
    if not people:
        return dataclasses.replace(PoseFrame.empty(like.width, like.height), track_ids=np.zeros(0))
    kps, scores, boxes, box_scores, ids = (np.array(v) for v in zip(*people))
    return PoseFrame(kps, scores, boxes, box_scores, like.width, like.height, ids)


# ---------------------------------------------------------------------------- selection


class PersonSelector:
    """Which people to keep: everyone (None), the N largest (an int: by box area summed
    over the frames seen so far, so the choice is stable), or given track ids."""

    def __init__(self, people: int | Collection[int] | None = None):
        if isinstance(people, int) and people < 1:
            raise ValueError(f"keep at least 1 person, got {people}")
        self.people = people
        self._area: dict[int, float] = {}

    def observe(self, frame: PoseFrame) -> None:
        """Count a frame's people towards "largest" (call before the frame is selected)."""
        if isinstance(self.people, int) and frame.track_ids is not None:
            for track_id, area in zip(frame.track_ids.tolist(), _area(frame.boxes).tolist()):
                self._area[track_id] = self._area.get(track_id, 0.0) + area

    def __call__(self, frame: PoseFrame) -> PoseFrame:
        if self.people is None:
            return frame
        if frame.track_ids is None:
            raise ValueError("selecting people needs tracked frames (track_ids)")
        if isinstance(self.people, int):
            ranked = sorted(self._area, key=lambda i: (-self._area[i], i))
            keep = set(ranked[: self.people])
        else:
            keep = set(self.people)
        return frame.select(np.array([i in keep for i in frame.track_ids.tolist()], bool))


# ---------------------------------------------------------------------------- pipeline


def finish(
    stream: Iterable[tuple[PoseFrame, float, Any]],
    smoother: Smoother | None,
    selector: PersonSelector,
) -> Iterator[tuple[PoseFrame, Any]]:
    """Tracked (frame, time, payload) in, smoothed and selected (frame, payload) out, in order."""
    for frame, time, payload in stream:
        selector.observe(frame)
        if smoother is None:
            yield selector(frame), payload
            continue
        for done, done_payload in smoother.push(frame, time, payload):
            yield selector(done), done_payload
    if smoother is not None:
        for done, done_payload in smoother.flush():
            yield selector(done), done_payload


def track_poses(
    frames: Iterable[PoseFrame],
    times: Iterable[float] | None = None,
    *,
    fps: float = 30.0,
    tracker: Tracker | None = None,
    smoother: Smoother | Callable[[], Smoother] | None = Smoother,
    people: int | Collection[int] | None = None,
) -> Iterator[PoseFrame]:
    """Track, smooth and select people over frames estimated one by one (e.g. POSE_KEYPOINT
    of a video). `times` in seconds (default: frame index / fps)."""
    tracker = tracker or Tracker()
    smoother = smoother() if callable(smoother) else smoother
    times = iter(times) if times is not None else (i / fps for i in range(1 << 62))
    stream = ((tracker.update(f), t, None) for f, t in zip(frames, times))
    for frame, _ in finish(stream, smoother, PersonSelector(people)):
        yield frame
