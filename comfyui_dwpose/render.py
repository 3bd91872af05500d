"""The OpenPose-style map that ControlNet models were trained on, drawn exactly (SPEC.md).

Drawn straight at the requested size from scaled coordinates, so maps stay crisp at any
resolution; at the frame's own size the result equals upstream's map pixel for pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from . import schema
from .limits import MAX_COORDINATE, check_map_size
from .raster import thick_line
from .result import DEFAULT_THRESHOLD, PoseFrame, openpose18

BODY_STICK_WIDTH = 4  # half-width of a body limb ellipse, in pixels
HAND_LINE_THICKNESS = 2
BODY_POINT_RADIUS = 4
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3
BODY_DIM = 0.6  # limbs are dimmed before the joints are drawn on top
# canvas × 0.6 truncated to uint8, as a table: no float copy of a large canvas.
_DIM_TABLE = (np.arange(256, dtype=np.uint8) * BODY_DIM).astype(np.uint8)


def _hand_edge_colors() -> list[tuple[int, int, int]]:
    """HSV(e/20, 1, 1)·255 per hand edge, computed and rounded as upstream's float colour."""
    colors = []
    for e in range(len(schema.HAND_EDGES)):
        h6 = e / float(len(schema.HAND_EDGES)) * 6.0
        i = int(h6)
        f = h6 - i
        q, t = 1.0 - f, 1.0 - (1.0 - f)
        rgb = [
            (1.0, t, 0.0),
            (q, 1.0, 0.0),
            (0.0, 1.0, t),
            (0.0, q, 1.0),
            (t, 0.0, 1.0),
            (1.0, 0.0, q),
        ][i % 6]
        # OpenCV rounds a float colour half to even.
        colors.append(tuple(int(np.rint(c * 255)) for c in rgb))
    return colors


HAND_EDGE_COLORS = _hand_edge_colors()


def xinsr_stick_width(width: int, height: int) -> int:
    """Body half-width for xinsir's SDXL OpenPose ControlNet: scaled with the canvas."""
    longest = max(width, height)
    scale = 1 if longest < 500 else min(2 + longest // 1000, 7)
    return BODY_STICK_WIDTH * scale


def map_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The map size whose short side is `resolution` (0: the frame's own size)."""
    if resolution <= 0:
        return width, height
    scale = resolution / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def render_pose(
    frames: PoseFrame | Sequence[PoseFrame],
    width: int | None = None,
    height: int | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    body: bool = True,
    hands: bool = True,
    face: bool = True,
    feet: bool = False,
    stick_width: int | str = BODY_STICK_WIDTH,
) -> np.ndarray:
    """Draw one frame's people as an RGB uint8 map of `height`×`width` (default: the frame's size).

    A list of frames gives a stacked (B,H,W,3) array; an empty list gives (0,H,W,3) when
    both sizes are given. `stick_width` is the body limb half-width in pixels, or "xinsr"
    for the rule of xinsir's SDXL ControlNet. Points that are NaN, infinite or absurdly
    far away (beyond MAX_COORDINATE) are not drawn, as unseen ones. A map beyond the size
    limits (`limits.check_map_size`) is refused before it is allocated.
    """
    if not isinstance(frames, PoseFrame):
        frames = list(frames)
        if not frames:
            if width is None or height is None:
                raise ValueError(
                    "render_pose got no frames: give at least one, or width and height"
                )
            check_map_size(int(width), int(height))
            return np.zeros((0, int(height), int(width), 3), np.uint8)
        return np.stack([
            render_pose(f, width, height, threshold=threshold, body=body, hands=hands, face=face,
                        feet=feet, stick_width=stick_width)
            for f in frames
        ])  # fmt: skip
    frame = frames
    width = frame.width if width is None else int(width)
    height = frame.height if height is None else int(height)
    check_map_size(width, height)
    if stick_width == "xinsr":
        stick_width = xinsr_stick_width(width, height)
    elif not isinstance(stick_width, (int, np.integer)) or stick_width < 1:
        raise ValueError(
            f"stick_width must be a positive number of pixels or 'xinsr', got {stick_width!r}"
        )

    # Upstream normalises by the frame size and multiplies by the canvas size: do the same
    # so that at the frame's own size every coordinate (and its rounding) is identical.
    def to_canvas(points: np.ndarray) -> np.ndarray:
        return points.astype(np.float64) / [frame.width, frame.height] * [width, height]

    keypoints, sc = _drawable(frame, width, height)
    kp = to_canvas(keypoints)
    canvas = np.zeros((height, width, 3), np.uint8)

    if body:
        points, visible = openpose18(keypoints, sc, threshold)
        points = to_canvas(points)
        limbs = [(schema.BODY_LIMBS, schema.BODY_COLORS)]
        joint_colors = list(schema.BODY_COLORS)
        if feet:
            points = np.concatenate([points, kp[:, schema.FEET]], axis=1)
            visible = np.concatenate([visible, sc[:, schema.FEET] > threshold], axis=1)
            limbs.append((schema.FOOT_LIMBS, schema.FOOT_COLORS))
            joint_colors += list(schema.FOOT_COLORS)
        for pairs, colors in limbs:
            for (a, b), color in zip(pairs, colors):
                for n in range(len(frame)):
                    if visible[n, a] and visible[n, b]:
                        _draw_limb(canvas, points[n, a], points[n, b], stick_width, color)
        cv2.LUT(canvas, _DIM_TABLE, dst=canvas)
        for j, color in enumerate(joint_colors):
            for n in range(len(frame)):
                if visible[n, j]:
                    x, y = points[n, j]
                    cv2.circle(canvas, (int(x), int(y)), BODY_POINT_RADIUS, color, thickness=-1)

    if hands:
        for part in (schema.LEFT_HAND, schema.RIGHT_HAND):
            for n in range(len(frame)):
                _draw_hand(canvas, kp[n, part], sc[n, part] >= threshold)

    if face:
        for n in range(len(frame)):
            for x, y in _pixels(kp[n, schema.FACE], sc[n, schema.FACE] >= threshold):
                cv2.circle(canvas, (x, y), FACE_POINT_RADIUS, schema.FACE_POINT_COLOR, thickness=-1)
    return canvas


def _drawable(frame: PoseFrame, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and float64 scores with every point that cannot be drawn (NaN, infinite,
    beyond MAX_COORDINATE on the map, NaN score) set to 0 and made unseen (score -inf)."""
    keypoints = frame.keypoints
    scores = frame.scores.astype(np.float64)
    scale = max(width / max(frame.width, 1), height / max(frame.height, 1), 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~(np.abs(keypoints) * scale <= MAX_COORDINATE).all(axis=-1) | np.isnan(scores)
    if bad.any():
        keypoints = np.where(bad[..., None], 0.0, keypoints)
        scores = np.where(bad, -np.inf, scores)
    return keypoints, scores


def _draw_limb(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, half_width: int, color) -> None:
    """A limb is a filled ellipse polygon between two joints (OpenCV LINE_8, 1° steps)."""
    xa, ya = float(a[0]), float(a[1])
    xb, yb = float(b[0]), float(b[1])
    length = ((ya - yb) ** 2 + (xa - xb) ** 2) ** 0.5
    angle = math.degrees(math.atan2(ya - yb, xa - xb))
    center = (int((xa + xb) / 2), int((ya + yb) / 2))
    polygon = cv2.ellipse2Poly(center, (int(length / 2), half_width), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, color)


def _pixels(points: np.ndarray, visible: np.ndarray) -> list[tuple[int, int]]:
    """Integer pixels of the visible points that upstream draws (both coordinates ≥ 1)."""
    out = []
    for (x, y), v in zip(points.tolist(), visible.tolist()):
        x, y = int(x), int(y)
        if v and x >= 1 and y >= 1:
            out.append((x, y))
    return out


def _draw_hand(canvas: np.ndarray, points: np.ndarray, visible: np.ndarray) -> None:
    xy = [(int(x), int(y)) for x, y in points.tolist()]
    shown = [bool(v) and x >= 1 and y >= 1 for v, (x, y) in zip(visible.tolist(), xy)]
    for (i, j), color in zip(schema.HAND_EDGES, HAND_EDGE_COLORS):
        if shown[i] and shown[j]:  # cv2.line as OpenCV 4.12 draws it, under any OpenCV
            thick_line(canvas, xy[i], xy[j], HAND_LINE_THICKNESS, color)
    for p, s in zip(xy, shown):
        if s:
            cv2.circle(canvas, p, HAND_POINT_RADIUS, schema.HAND_POINT_COLOR, thickness=-1)
