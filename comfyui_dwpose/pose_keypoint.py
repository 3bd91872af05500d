"""Reading POSE_KEYPOINT strictly: ComfyUI's list of OpenPose-format frame dicts, from a node
input or a JSON file, whoever wrote it (this pack, comfyui_controlnet_aux, pose editors).

Every field is checked; anything malformed is one `PoseKeypointError` naming the source,
the frame and the field (`poses.json: frame 3: people[0].box: ...`). Values that are
well-formed but cannot be drawn (NaN, infinite, or further than limits.MAX_COORDINATE
pixels) become unseen points instead of errors.

One frame:
    canvas_width, canvas_height   whole numbers >= 1, at most an image's size (limits.py)
    people                        a list of person dicts (missing or null: nobody), each with
                                  any of these keys (missing or null: not given):
      pose_keypoints_2d           >= 18 (x, y, c) triples, flat; OpenPose-18 order
      face_keypoints_2d           >= 68 triples
      hand_left_keypoints_2d,     >= 21 triples each
      hand_right_keypoints_2d
      foot_keypoints_2d           >= 6 triples
      keypoints_133               133 (x, y, score) triples in COCO-WholeBody order, pixels
                                  (this pack's lossless record; preferred when present)
      box                         [x1, y1, x2, y2] or [x1, y1, x2, y2, score]
      person_id                   a whole number (track id)
Other keys are ignored. Points of the OpenPose parts are in canvas pixels, or normalised to
the canvas (0-1), as some editors write them: see `coordinates` of `parse`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from . import schema
from .limits import MAX_COORDINATE, SizeLimitError, check_image_size

COORDINATES = ("auto", "pixels", "normalised")
PARTS = {  # key: (points needed, COCO-WholeBody indices they fill)
    "pose_keypoints_2d": (18, None),
    "face_keypoints_2d": (68, schema.FACE),
    "hand_left_keypoints_2d": (21, schema.LEFT_HAND),
    "hand_right_keypoints_2d": (21, schema.RIGHT_HAND),
    "foot_keypoints_2d": (6, schema.FEET),
}
INT64 = (-(2**63), 2**63 - 1)
FLOAT32_MAX = float(np.finfo(np.float32).max)


class PoseKeypointError(ValueError):
    """Malformed POSE_KEYPOINT: the message names the source, the frame and the field."""


def read_json(path: str | os.PathLike) -> object:
    """The parsed content of a JSON file, or `PoseKeypointError` saying why it is not one."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise PoseKeypointError(
            f"cannot read POSE_KEYPOINT JSON from {path}: nested too deeply"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoseKeypointError(f"cannot read POSE_KEYPOINT JSON from {path}: {exc}") from exc


def parse(value: object, source: str = "POSE_KEYPOINT", coordinates: str = "auto") -> list[dict]:
    """The frames of a POSE_KEYPOINT value (a list of frame dicts, or one frame dict), each
    as the arguments of `PoseFrame`: keypoints, scores, boxes, box_scores, width, height,
    track_ids.

    coordinates: how to read the OpenPose parts' points. "pixels"; "normalised" (0-1 of
    the canvas); or "auto": normalised when every seen point lies within one canvas of it
    ([-1, 2]) and most lie on it ([0, 1]): a leg below the frame (y = 1.18) stays a leg,
    while pixel coordinates of any real person are far larger. `keypoints_133` is pixels.
    """
    if coordinates not in COORDINATES:
        raise ValueError(f"coordinates must be one of {COORDINATES}, got {coordinates!r}")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PoseKeypointError(
            f"{source}: expected a POSE_KEYPOINT list of frames, got {type(value).__name__}"
        )
    return [_frame(entry, f"{source}: frame {i}", coordinates) for i, entry in enumerate(value)]


def _frame(entry: object, where: str, coordinates: str) -> dict:
    if not isinstance(entry, dict):
        raise PoseKeypointError(f"{where}: expected a dict, got {_kind(entry)}")
    width = _canvas_side(entry, "canvas_width", where)
    height = _canvas_side(entry, "canvas_height", where)
    try:
        check_image_size(width, height, f"{where}: canvas")
    except SizeLimitError as exc:
        raise PoseKeypointError(str(exc)) from None
    people = entry.get("people")
    if people is None:
        people = []
    if not isinstance(people, list):
        raise PoseKeypointError(f"{where}: people: expected a list, got {_kind(people)}")
    n = len(people)
    keypoints = np.zeros((n, schema.NUM_KEYPOINTS, 2))
    scores = np.zeros((n, schema.NUM_KEYPOINTS))
    boxes = np.zeros((n, 4))
    box_scores = np.ones(n)
    ids: list[int | None] = []
    parts = []
    for i, person in enumerate(people):
        at = f"{where}: people[{i}]"
        if not isinstance(person, dict):
            raise PoseKeypointError(f"{at}: expected a dict, got {_kind(person)}")
        parts.append(
            {
                key: _triples(person.get(key), count, f"{at}.{key}")
                for key, (count, _) in PARTS.items()
            }
        )
        whole = _triples(person.get("keypoints_133"), schema.NUM_KEYPOINTS, f"{at}.keypoints_133")
        if whole is not None:
            keypoints[i], scores[i] = (
                whole[: schema.NUM_KEYPOINTS, :2],
                whole[: schema.NUM_KEYPOINTS, 2],
            )
            parts[-1] = None  # the exact record wins over the rounded parts
        box = person.get("box")
        if box is not None:
            boxes[i], box_scores[i] = _box(box, f"{at}.box")
        ids.append(
            _whole(person["person_id"], f"{at}.person_id")
            if person.get("person_id") is not None
            else None
        )
    scale = _scale(parts, width, height, coordinates)
    for i, person_parts in enumerate(parts):
        if person_parts is not None:
            keypoints[i], scores[i] = _from_parts(person_parts, scale)
    _hide_undrawable(keypoints, scores)
    for i, person in enumerate(people):
        if person.get("box") is None or not np.isfinite(boxes[i]).all():
            boxes[i] = _bounds(keypoints[i], scores[i] > 0)
        if not abs(box_scores[i]) <= FLOAT32_MAX:  # NaN, or no float32
            box_scores[i] = 0.0
    track_ids = np.asarray(ids, np.int64) if ids and None not in ids else None
    return {
        "keypoints": keypoints, "scores": scores, "boxes": boxes, "box_scores": box_scores,
        "width": width, "height": height, "track_ids": track_ids,
    }  # fmt: skip


def _canvas_side(entry: dict, key: str, where: str) -> int:
    if key not in entry:
        raise PoseKeypointError(
            f"{where}: {key} is missing (a POSE_KEYPOINT frame needs canvas_width, "
            "canvas_height and people)"
        )
    value = _whole(entry[key], f"{where}: {key}")
    if value < 1:
        raise PoseKeypointError(f"{where}: {key} must be at least 1, got {value}")
    return value


def _is_number(value: object) -> bool:
    """Python and numpy numbers; not bools, strings or containers."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _whole(value: object, where: str) -> int:
    """A whole number (an int, or a float without fraction) within int64."""
    whole = _is_number(value) and (
        isinstance(value, (int, np.integer)) or (math.isfinite(value) and float(value).is_integer())
    )
    if not whole or not INT64[0] <= int(value) <= INT64[1]:
        raise PoseKeypointError(f"{where}: expected a whole number, got {_kind(value)}")
    return int(value)


def _numbers(values: object, where: str) -> np.ndarray:
    """A flat list of numbers as float64 (NaN and infinities allowed: they become unseen)."""
    if not isinstance(values, (list, tuple)):
        raise PoseKeypointError(f"{where}: expected a list of numbers, got {_kind(values)}")
    for j, v in enumerate(values):
        if type(v) not in (float, int) and not _is_number(v):
            raise PoseKeypointError(f"{where}[{j}]: expected a number, got {_kind(v)}")
    try:
        return np.asarray(values, np.float64)
    except OverflowError:  # an int beyond float range: absurd, so unseen
        return np.array([float(v) if abs(v) < 1e308 else math.inf for v in values])


def _triples(values: object, count: int, where: str) -> np.ndarray | None:
    """(N, 3) points of a part, N >= count; None when the part is missing, null or empty."""
    if values is None or (isinstance(values, (list, tuple)) and not values):
        return None
    flat = _numbers(values, where)
    if len(flat) % 3:
        raise PoseKeypointError(f"{where}: {len(flat)} numbers is not a list of (x, y, c) triples")
    if len(flat) < 3 * count:
        raise PoseKeypointError(f"{where}: has {len(flat) // 3} points, expected {count}")
    return flat.reshape(-1, 3)


def _box(values: object, where: str) -> tuple[np.ndarray, float]:
    flat = _numbers(values, where)
    if len(flat) not in (4, 5):
        raise PoseKeypointError(
            f"{where}: expected [x1, y1, x2, y2] or [x1, y1, x2, y2, score], got {len(flat)} numbers"
        )
    return flat[:4], float(flat[4]) if len(flat) == 5 else 1.0


def _scale(parts: list[dict | None], width: int, height: int, coordinates: str) -> np.ndarray:
    """Canvas pixels per unit of the parts' coordinates: (1, 1) or (width, height)."""
    if coordinates == "pixels":
        return np.ones(2)
    if coordinates == "normalised":
        return np.array([width, height], np.float64)
    seen = [
        arr[:, :2][arr[:, 2] >= 1.0]
        for person in parts
        if person is not None
        for arr in person.values()
        if arr is not None
    ]
    values = np.concatenate([v.ravel() for v in seen]) if seen else np.zeros(0)
    values = values[np.isfinite(values)]
    normalised = (
        len(values) > 0
        and ((values >= -1.0) & (values <= 2.0)).all()
        and ((values >= 0.0) & (values <= 1.0)).mean() >= 0.5
    )
    return np.array([width, height], np.float64) if normalised else np.ones(2)


def _from_parts(parts: dict, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-WholeBody keypoints and scores from the OpenPose parts (the neck is derived)."""
    kp = np.zeros((schema.NUM_KEYPOINTS, 2))
    sc = np.zeros(schema.NUM_KEYPOINTS)
    for key, (count, target) in PARTS.items():
        arr = parts[key]
        if arr is None:
            continue
        arr = arr[:count]
        if target is None:  # the body: OpenPose-18 order
            for j, coco in enumerate(schema.OPENPOSE18_FROM_COCO):
                if coco != schema.NECK:
                    kp[coco], sc[coco] = arr[j, :2] * scale, arr[j, 2]
        else:
            kp[target], sc[target] = arr[:, :2] * scale, arr[:, 2]
    return kp, sc


def _hide_undrawable(keypoints: np.ndarray, scores: np.ndarray) -> None:
    """NaN, infinite and absurd points (and scores that are NaN or beyond float32) become
    unseen: (0, 0), score 0."""
    with np.errstate(invalid="ignore", over="ignore"):  # scores are kept as float32
        bad = ~(np.abs(keypoints) <= MAX_COORDINATE).all(axis=-1)
        bad |= ~np.isfinite(scores.astype(np.float32))
    keypoints[bad] = 0.0
    scores[bad] = 0.0


def _bounds(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    if not visible.any():
        return np.zeros(4)
    pts = points[visible]
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def _kind(value: object) -> str:
    """How a wrong value is shown in a message: its type, and the value when short."""
    if value is None or isinstance(value, (bool, int, float)):
        return f"{type(value).__name__} {value!r}" if value is not None else "null"
    if isinstance(value, str):
        return f"str {value[:40]!r}"
    return type(value).__name__
