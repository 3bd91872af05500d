"""Thick lines drawn as OpenCV 4.12 draws them, whatever OpenCV is installed.

Upstream's maps were drawn with OpenCV 4.12. From 4.13 on, cv2.line first clips a thick
line that leaves the canvas to the canvas (grown by the thickness), which moves a few
pixels of hand lines that cross the border. `thick_lines` draws what cv2.line draws in
OpenCV 4.8-4.12 (LINE_8, thickness ≥ 2): a quadrilateral of the line's width with corners
in 16.16 fixed point, filled, and a filled circle at each end. It draws them with
cv2.fillConvexPoly and cv2.circle, whose code is the same from OpenCV 4.8 to 5.0 (as is
cv2.ellipse2Poly's, the map's other primitive), so maps do not depend on the OpenCV build
(tests/opencv_matrix.py runs the golden maps under each).
"""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np

XY_SHIFT = 16  # OpenCV's fixed point: 16 fractional bits
FIXED_MAX = 2**31 - 1  # 16.16 coordinates are passed to OpenCV as int32


def thick_lines(
    canvas: np.ndarray, starts, ends, thickness: int, colors, *, caps: bool = True
) -> None:
    """cv2.line(canvas, start, end, color, thickness) for each line in turn, as OpenCV
    4.12 draws it: integer points, `thickness` ≥ 2, one colour per line.

    `caps=False` leaves out the round ends, for callers that cover every end point with
    a larger filled circle afterwards (they would paint over them anyway).

    Exact for points within ±32767 pixels (OpenCV's 16.16 coordinates in int32) and lines
    with |dx·dy| under 2**31 px² (beyond, 4.12's own clipping overflows); other lines are
    first clipped to the canvas as OpenCV 4.13 does."""
    if thickness < 2:
        raise ValueError(f"line thickness must be at least 2, got {thickness}")
    half = thickness << (XY_SHIFT - 1)  # half the width, 16.16
    width = half + (thickness & 1) * (1 << (XY_SHIFT - 1))
    lines, corners = [], []
    for (x0, y0), (x1, y1) in zip(starts, ends):
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        if not _fits(x0, y0, x1, y1, thickness):
            x0, y0, x1, y1 = _clip_to(canvas, x0, y0, x1, y1, thickness)
            if not _fits(x0, y0, x1, y1, thickness):
                raise ValueError(f"cannot draw lines on a {canvas.shape[1]}x{canvas.shape[0]} map")
        lines.append((x0, y0, x1, y1))
        # The half-width vector across the line, rounded half to even as cvRound does.
        dx, dy = float(x0 - x1), float(y1 - y0)
        length2 = dx * dx + dy * dy
        if length2 > sys.float_info.epsilon:
            scale = width / math.sqrt(length2)
            ox, oy = round(dy * scale), round(dx * scale)
            ax, ay, bx, by = x0 << XY_SHIFT, y0 << XY_SHIFT, x1 << XY_SHIFT, y1 << XY_SHIFT
            corners += [ax + ox, ay + oy, ax - ox, ay - oy, bx - ox, by - oy, bx + ox, by + oy]
        else:
            corners += [0] * 8  # a point: no quadrilateral
    quads = np.array(corners, np.int32).reshape(-1, 4, 2)
    radius = (half + (1 << (XY_SHIFT - 1))) >> XY_SHIFT
    for quad, color, (x0, y0, x1, y1) in zip(quads, colors, lines):
        if (x0, y0) != (x1, y1):
            cv2.fillConvexPoly(canvas, quad, color, cv2.LINE_8, XY_SHIFT)
        if caps:
            cv2.circle(canvas, (x0, y0), radius, color, thickness=-1)
            cv2.circle(canvas, (x1, y1), radius, color, thickness=-1)


def _fits(x0: int, y0: int, x1: int, y1: int, thickness: int) -> bool:
    """Whether OpenCV 4.12 draws this line without overflowing its fixed point."""
    near = max(abs(x0), abs(y0), abs(x1), abs(y1)) + thickness <= FIXED_MAX >> XY_SHIFT
    return near and (abs(x1 - x0) + thickness + 2) * (abs(y1 - y0) + thickness + 2) < 2**31


def _clip_to(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, margin: int):
    """The segment clipped to the canvas grown by `margin` (OpenCV's clipLine: integer
    steps truncated toward zero); one that misses it becomes a point off the canvas."""
    w, h = canvas.shape[1] + 2 * margin, canvas.shape[0] + 2 * margin
    x0, y0, x1, y1 = x0 + margin, y0 + margin, x1 + margin, y1 + margin
    right, bottom = w - 1, h - 1

    def code(x, y):
        return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    c0, c1 = code(x0, y0), code(x1, y1)
    if (c0 & c1) == 0 and (c0 | c1):
        if c0 & 12:
            edge = 0 if c0 < 8 else bottom
            x0 += _div((edge - y0) * (x1 - x0), y1 - y0)
            y0, c0 = edge, code(x0, edge) & 3
        if c1 & 12:
            edge = 0 if c1 < 8 else bottom
            x1 += _div((edge - y1) * (x1 - x0), y1 - y0)
            y1, c1 = edge, code(x1, edge) & 3
        if (c0 & c1) == 0 and (c0 | c1):
            if c0:
                edge = 0 if c0 == 1 else right
                y0 += _div((edge - x0) * (y1 - y0), x1 - x0)
                x0 = edge
            if c1:
                edge = 0 if c1 == 1 else right
                y1 += _div((edge - x1) * (y1 - y0), x1 - x0)
                x1 = edge
            c0 = c1 = 0
    if c0 | c1:
        return -2 * margin, -2 * margin, -2 * margin, -2 * margin
    return x0 - margin, y0 - margin, x1 - margin, y1 - margin


def _div(a: int, b: int) -> int:
    """C's integer division: truncated toward zero."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q
