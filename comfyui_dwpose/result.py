"""Pose results: the `PoseFrame` type and ComfyUI's POSE_KEYPOINT format in and out.

A `PoseFrame` keeps what the models said (COCO-WholeBody keypoints in pixels of the
frame, raw scores, boxes); everything else (OpenPose order, JSON, maps) is derived from
it, with thresholds applied at that moment and never by deleting data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import schema

DEFAULT_THRESHOLD = 0.3


@dataclass
class PoseFrame:
    """All people found in one frame.

    keypoints (N,133,2) float64 pixels, scores (N,133) float32 raw SimCC maxima,
    boxes (N,4) float64 x1y1x2y2 pixels, box_scores (N,) float32, track_ids (N,) int64 or
    None. Coordinates are float64 because upstream computes them so: float32 storage moves
    an occasional limb of the drawn map by a pixel.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    width: int
    height: int
    track_ids: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        self.keypoints = np.asarray(self.keypoints, np.float64).reshape(n, schema.NUM_KEYPOINTS, 2)
        self.scores = np.asarray(self.scores, np.float32).reshape(n, schema.NUM_KEYPOINTS)
        self.boxes = np.asarray(self.boxes, np.float64).reshape(n, 4)
        self.box_scores = np.asarray(self.box_scores, np.float32).reshape(n)
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, np.int64).reshape(n)
        self.width, self.height = int(self.width), int(self.height)

    @classmethod
    def empty(cls, width: int, height: int) -> PoseFrame:
        return cls(
            np.zeros((0, 133, 2)), np.zeros((0, 133)), np.zeros((0, 4)), np.zeros(0), width, height
        )

    def __len__(self) -> int:
        return len(self.keypoints)

    def select(self, index: np.ndarray | Sequence[int] | slice) -> PoseFrame:
        """The people at `index` (an index array, boolean mask or slice), in that order."""
        ids = None if self.track_ids is None else self.track_ids[index]
        return PoseFrame(
            self.keypoints[index], self.scores[index], self.boxes[index], self.box_scores[index],
            self.width, self.height, ids,
        )  # fmt: skip

    def largest(self, count: int) -> PoseFrame:
        """The `count` people with the largest boxes, largest first."""
        areas = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        return self.select(np.argsort(-areas, kind="stable")[:count])

    def to_pose_keypoint(self, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """This frame as one entry of ComfyUI's POSE_KEYPOINT list (see `to_pose_keypoint`)."""
        body, body_visible = openpose18(self.keypoints, self.scores, threshold)
        people = []
        for n in range(len(self)):
            kp, sc = self.keypoints[n], self.scores[n].astype(np.float64)
            face = _flat(kp[schema.FACE], sc[schema.FACE] >= threshold)
            eyes = [schema.OP18_R_EYE, schema.OP18_L_EYE]
            face_eyes = _flat(body[n, eyes], body_visible[n, eyes])
            person = {
                # The body is always a list: comfyui_controlnet_aux's renderer indexes it.
                "pose_keypoints_2d": _flat(body[n], body_visible[n]),
                "face_keypoints_2d": _or_none(face + face_eyes, face),
                "hand_left_keypoints_2d": _or_none(
                    _flat(kp[schema.LEFT_HAND], sc[schema.LEFT_HAND] >= threshold)
                ),
                "hand_right_keypoints_2d": _or_none(
                    _flat(kp[schema.RIGHT_HAND], sc[schema.RIGHT_HAND] >= threshold)
                ),
                "foot_keypoints_2d": _or_none(_flat(kp[schema.FEET], sc[schema.FEET] > threshold)),
                # Lossless record: COCO-WholeBody order, real scores.
                "keypoints_133": np.concatenate([kp, sc[:, None]], axis=1).ravel().tolist(),
                "box": [*self.boxes[n].tolist(), float(self.box_scores[n])],
            }
            if self.track_ids is not None:
                person["person_id"] = int(self.track_ids[n])
            people.append(person)
        return {"people": people, "canvas_width": self.width, "canvas_height": self.height}

    @classmethod
    def from_pose_keypoint(cls, entry: dict) -> PoseFrame:
        """Rebuild a frame from one POSE_KEYPOINT entry: ours exactly (from `keypoints_133`),
        or another tool's from its OpenPose parts (visible points get score 1, hidden 0)."""
        try:
            width, height = int(entry["canvas_width"]), int(entry["canvas_height"])
            people = entry.get("people") or []
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"not a POSE_KEYPOINT frame (needs canvas_width, canvas_height, people): {exc}"
            ) from exc
        keypoints = np.zeros((len(people), schema.NUM_KEYPOINTS, 2))
        scores = np.zeros((len(people), schema.NUM_KEYPOINTS), np.float32)
        boxes = np.zeros((len(people), 4))
        box_scores = np.ones(len(people), np.float32)
        ids = []
        for n, person in enumerate(people):
            if person.get("keypoints_133"):
                flat = np.asarray(person["keypoints_133"], np.float64).reshape(
                    schema.NUM_KEYPOINTS, 3
                )
                keypoints[n], scores[n] = flat[:, :2], flat[:, 2]
            else:
                keypoints[n], scores[n] = _from_openpose_parts(person, width, height)
            if person.get("box"):
                boxes[n], box_scores[n] = person["box"][:4], person["box"][4]
            else:
                boxes[n] = _bounds(keypoints[n], scores[n] > 0)
            ids.append(person.get("person_id"))
        track_ids = np.asarray(ids, np.int64) if ids and all(i is not None for i in ids) else None
        return cls(keypoints, scores, boxes, box_scores, width, height, track_ids)


def openpose18(
    keypoints: np.ndarray, scores: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Body joints in OpenPose-18 order: coordinates (N,18,2) float64 and visibility (N,18).

    Upstream's rule: a body joint is visible when its score is above the threshold; the
    neck is the mean of the shoulders, visible when both shoulders are.
    """
    kp = np.asarray(keypoints, np.float64)
    sc = np.asarray(scores, np.float64)  # compare as upstream does, in float64
    order = list(schema.OPENPOSE18_FROM_COCO)
    neck = order.index(schema.NECK)
    order[neck] = 0
    body, visible = kp[:, order].copy(), sc[:, order] > threshold
    shoulders = [schema.LEFT_SHOULDER, schema.RIGHT_SHOULDER]
    body[:, neck] = kp[:, shoulders].mean(axis=1)
    visible[:, neck] = (sc[:, shoulders] > threshold).all(axis=1)
    return body, visible


def to_pose_keypoint(
    frames: PoseFrame | Sequence[PoseFrame], threshold: float = DEFAULT_THRESHOLD
) -> list[dict]:
    """ComfyUI's POSE_KEYPOINT: a list with one dict per frame, even for one frame.

    Visible points are [x, y, 1.0] in canvas pixels and hidden ones [0, 0, 0], because
    comfyui_controlnet_aux's consumers drop every point whose c is below 1.0. Real
    scores, feet, boxes and track ids travel in extra keys.
    """
    if isinstance(frames, PoseFrame):
        frames = [frames]
    return [frame.to_pose_keypoint(threshold) for frame in frames]


def from_pose_keypoint(value: dict | Sequence[dict]) -> list[PoseFrame]:
    """Frames from a POSE_KEYPOINT value (a list of frame dicts, or one frame dict)."""
    if isinstance(value, dict):
        value = [value]
    return [PoseFrame.from_pose_keypoint(entry) for entry in value]


def save_json(value: list[dict], path: str | Path) -> None:
    """Write JSON to a temporary name, then rename, so a partial file never looks complete."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


def load_json(path: str | Path) -> list[PoseFrame]:
    """Frames from a POSE_KEYPOINT JSON file, with a clear error when it is not one."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read POSE_KEYPOINT JSON from {path}: {exc}") from exc
    if not isinstance(value, (list, dict)):
        raise ValueError(
            f"{path}: expected a POSE_KEYPOINT list of frames, got {type(value).__name__}"
        )
    return from_pose_keypoint(value)


def _flat(points: np.ndarray, visible: np.ndarray) -> list[float]:
    out = []
    for (x, y), v in zip(points.tolist(), visible.tolist()):
        out += [float(x), float(y), 1.0] if v else [0.0, 0.0, 0.0]
    return out


def _or_none(values: list[float], part: list[float] | None = None) -> list[float] | None:
    """None when `part` (default: `values`) has no visible point."""
    part = values if part is None else part
    return values if any(part[2::3]) else None


def _from_openpose_parts(person: dict, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    kp = np.zeros((schema.NUM_KEYPOINTS, 2))
    sc = np.zeros(schema.NUM_KEYPOINTS, np.float32)

    def part(key: str, count: int) -> np.ndarray | None:
        values = person.get(key)
        if not values:
            return None
        arr = np.asarray(values, np.float64).reshape(-1, 3)
        if len(arr) < count:
            raise ValueError(f"POSE_KEYPOINT {key} has {len(arr)} points, expected {count}")
        return arr[:count]

    parts = {
        "pose_keypoints_2d": 18, "face_keypoints_2d": 68, "hand_left_keypoints_2d": 21,
        "hand_right_keypoints_2d": 21, "foot_keypoints_2d": 6,
    }  # fmt: skip
    arrays = {key: part(key, count) for key, count in parts.items()}
    visible = [a[:, :2][a[:, 2] >= 1.0] for a in arrays.values() if a is not None]
    # Some tools write coordinates normalised to the canvas; comfyui_controlnet_aux accepts both.
    normalised = any(len(v) for v in visible) and all((v <= 1.0).all() for v in visible)
    scale = np.array([width, height]) if normalised else np.ones(2)

    body = arrays["pose_keypoints_2d"]
    if body is not None:
        for j, coco in enumerate(schema.OPENPOSE18_FROM_COCO):
            if coco != schema.NECK:
                kp[coco], sc[coco] = body[j, :2] * scale, body[j, 2]
    targets = {
        "face_keypoints_2d": schema.FACE, "hand_left_keypoints_2d": schema.LEFT_HAND,
        "hand_right_keypoints_2d": schema.RIGHT_HAND, "foot_keypoints_2d": schema.FEET,
    }  # fmt: skip
    for key, target in targets.items():
        arr = arrays[key]
        if arr is not None:
            kp[target], sc[target] = arr[:, :2] * scale, arr[:, 2]
    return kp, sc


def _bounds(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    if not visible.any():
        return np.zeros(4)
    pts = points[visible]
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])
