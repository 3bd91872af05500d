"""Thick lines drawn as OpenCV 4.12 draws them, whatever OpenCV is installed.

Upstream's maps were drawn with OpenCV 4.12. From 4.13 on, cv2.line first clips a thick
line that leaves the canvas to the canvas (grown by the thickness), which moves a few
pixels of hand lines that cross the border. `thick_line` draws what cv2.line draws in
OpenCV 4.8-4.12 (LINE_8, thickness ≥ 2): a quadrilateral of the line's width with corners
in 16.16 fixed point, filled, and a filled circle at each end. It draws them with
cv2.fillConvexPoly and cv2.circle, whose code is the same from OpenCV 4.8 to 5.0 (as is
cv2.ellipse2Poly's, the map's other primitive), so maps do not depend on the OpenCV build
(tests/opencv_matrix.py runs the golden maps under each).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

XY_SHIFT = 16  # OpenCV's fixed point: 16 fractional bits
FIXED_MAX = 2**31 - 1  # 16.16 coordinates are passed to OpenCV as int32


def thick_line(canvas: np.ndarray, p0, p1, thickness: int, color) -> None:
    """cv2.line(canvas, p0, p1, color, thickness) as OpenCV 4.12 draws it, for integer
    points and `thickness` ≥ 2.

    A line with both ends on the canvas is drawn alike by every OpenCV from 4.8 to 5.0,
    so cv2.line draws it. Others are drawn here: exactly as 4.12 for ends within ±32767
    pixels (OpenCV's 16.16 coordinates in int32) and extents |dx·dy| under 2**31 px²
    (beyond, 4.12's own clipping overflows); past that, clipped to the canvas first as
    4.13 does."""
    if thickness < 2:
        raise ValueError(f"line thickness must be at least 2, got {thickness}")
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = int(p0[0]), int(p0[1]), int(p1[0]), int(p1[1])
    if 0 <= x0 < w and 0 <= x1 < w and 0 <= y0 < h and 0 <= y1 < h:
        cv2.line(canvas, (x0, y0), (x1, y1), color, thickness)
        return
    near = (FIXED_MAX >> XY_SHIFT) - thickness  # ends nearer the origin fit in 16.16 int32
    if max(abs(x0), abs(y0), abs(x1), abs(y1)) > near or not _small(x0 - x1, y1 - y0, thickness):
        x0, y0, x1, y1 = _clip_to(canvas, x0, y0, x1, y1, thickness)
        if max(abs(x0), abs(y0), abs(x1), abs(y1)) > near:
            raise ValueError(f"cannot draw lines on a {w}x{h} map")
    _line_4_12(canvas, x0, y0, x1, y1, thickness, color)


def _line_4_12(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, thickness: int, color):
    """OpenCV 4.12's thick line: the 16.16 quadrilateral, filled, and a circle at each end."""
    half = thickness << (XY_SHIFT - 1)  # half the width, 16.16
    dx, dy = x0 - x1, y1 - y0
    if dx or dy:
        # The half-width vector across the line, rounded half to even as cvRound does.
        width = half + (thickness & 1) * (1 << (XY_SHIFT - 1))
        scale = width / math.sqrt(float(dx * dx + dy * dy))
        ox, oy = round(dy * scale), round(dx * scale)
        ax, ay, bx, by = x0 << XY_SHIFT, y0 << XY_SHIFT, x1 << XY_SHIFT, y1 << XY_SHIFT
        corners = [(ax + ox, ay + oy), (ax - ox, ay - oy), (bx - ox, by - oy), (bx + ox, by + oy)]
        cv2.fillConvexPoly(canvas, np.array(corners, np.int32), color, cv2.LINE_8, XY_SHIFT)
    radius = (half + (1 << (XY_SHIFT - 1))) >> XY_SHIFT
    cv2.circle(canvas, (x0, y0), radius, color, thickness=-1)
    cv2.circle(canvas, (x1, y1), radius, color, thickness=-1)


def _small(dx: int, dy: int, thickness: int) -> bool:
    """Whether OpenCV 4.12 clips a line of this extent without overflowing int64 (its
    16.16 products of the corners' x and y extents)."""
    return (abs(dx) + thickness + 2) * (abs(dy) + thickness + 2) < 2**31


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
