"""Pose results: the `PoseFrame` type and ComfyUI's POSE_KEYPOINT format in and out.

A `PoseFrame` keeps what the models said (COCO-WholeBody keypoints in pixels of the
frame, raw scores, boxes); everything else (OpenPose order, JSON, maps) is derived from
it, with thresholds applied at that moment and never by deleting data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import files, schema
from .pose_keypoint import parse, read_json

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
        self.keypoints = _shaped(
            self.keypoints, np.float64, (n, schema.NUM_KEYPOINTS, 2), "keypoints"
        )
        self.scores = _shaped(self.scores, np.float32, (n, schema.NUM_KEYPOINTS), "scores")
        self.boxes = _shaped(self.boxes, np.float64, (n, 4), "boxes")
        self.box_scores = _shaped(self.box_scores, np.float32, (n,), "box_scores")
        if self.track_ids is not None:
            self.track_ids = _shaped(self.track_ids, np.int64, (n,), "track_ids")
        self.width, self.height = int(self.width), int(self.height)
        if self.width < 1 or self.height < 1:
            raise ValueError(
                f"PoseFrame: width and height must be positive, got {self.width}x{self.height}"
            )

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
        """This frame as one entry of ComfyUI's POSE_KEYPOINT list (see `to_pose_keypoint`).
        Non-finite values are written as unseen points (0, 0, 0) and zeros: valid JSON."""
        kp_all, sc_all = self.keypoints.copy(), self.scores.astype(np.float64)
        bad = ~(np.isfinite(kp_all).all(axis=-1) & np.isfinite(sc_all))
        kp_all[bad], sc_all[bad] = 0.0, 0.0
        body, body_visible = openpose18(kp_all, sc_all, threshold)
        people = []
        for n in range(len(self)):
            kp, sc = kp_all[n], sc_all[n]
            face = _flat(kp[schema.FACE], sc[schema.FACE] >= threshold)
            eyes = [schema.OP18_R_EYE, schema.OP18_L_EYE]
            face_eyes = _flat(body[n, eyes], body_visible[n, eyes])
            box = np.nan_to_num(
                np.append(self.boxes[n], self.box_scores[n]), nan=0.0, posinf=0.0, neginf=0.0
            )
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
                "box": box.tolist(),
            }
            if self.track_ids is not None:
                person["person_id"] = int(self.track_ids[n])
            people.append(person)
        return {"people": people, "canvas_width": self.width, "canvas_height": self.height}

    @classmethod
    def from_pose_keypoint(cls, entry: dict, coordinates: str = "auto") -> PoseFrame:
        """Rebuild a frame from one POSE_KEYPOINT entry: ours exactly (from `keypoints_133`),
        or another tool's from its OpenPose parts (scores as written: visible points 1,
        hidden 0). Checked strictly: see `pose_keypoint.parse`."""
        [frame] = from_pose_keypoint(entry, coordinates)
        return frame


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


def from_pose_keypoint(
    value: dict | Sequence[dict], coordinates: str = "auto", source: str = "POSE_KEYPOINT"
) -> list[PoseFrame]:
    """Frames from a POSE_KEYPOINT value (a list of frame dicts, or one frame dict).

    Malformed input is a `PoseKeypointError` (a ValueError) naming `source`, the frame and
    the field; NaN, infinite and absurd points are read as unseen. `coordinates`: "auto",
    "pixels" or "normalised" (see `pose_keypoint.parse`).
    """
    return [PoseFrame(**fields) for fields in parse(value, source, coordinates)]


def dumps(value: list[dict]) -> str:
    """POSE_KEYPOINT as JSON text, strictly valid: NaN and infinities (which `to_pose_keypoint`
    never writes) are a ValueError, never bare `NaN` in the file."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise ValueError(
            f"POSE_KEYPOINT holds NaN or infinite numbers, which JSON cannot store ({exc})"
        ) from exc


def save_json(value: list[dict], path: str | os.PathLike) -> None:
    """Write JSON whole or not at all (`files.replacing`): an OS error is an `OutputError`."""
    files.write_text(path, dumps(value))


def load_json(path: str | os.PathLike, coordinates: str = "auto") -> list[PoseFrame]:
    """Frames from a POSE_KEYPOINT JSON file; a `PoseKeypointError` naming the file, frame
    and field when it is not one."""
    return from_pose_keypoint(read_json(path), coordinates, source=str(path))


def _flat(points: np.ndarray, visible: np.ndarray) -> list[float]:
    out = []
    for (x, y), v in zip(points.tolist(), visible.tolist()):
        out += [float(x), float(y), 1.0] if v else [0.0, 0.0, 0.0]
    return out


def _or_none(values: list[float], part: list[float] | None = None) -> list[float] | None:
    """None when `part` (default: `values`) has no visible point."""
    part = values if part is None else part
    return values if any(part[2::3]) else None


def _shaped(value, dtype, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(value, dtype)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"PoseFrame: {name} must have shape {shape}, got {arr.shape}")
    return arr.reshape(shape)
