"""OpenCV's LINE_8 drawing of filled ellipses, circles and thick lines, in numpy.

Upstream's maps were drawn with OpenCV 4.12, and OpenCV's pixels are not stable across
builds: 4.13 clips thick lines at the canvas border before drawing them, so hand lines
that leave the canvas move. These functions reproduce OpenCV 4.10-4.12's integer
arithmetic (cv2.ellipse2Poly + cv2.fillConvexPoly, cv2.circle filled, cv2.line) pixel for
pixel whatever OpenCV is installed (tests/test_raster.py compares them with cv2 on random
shapes). Coordinates are pixels; OpenCV's 16.16 fixed point is used where OpenCV uses it.

All shapes of a map are rasterised together: `Drawing` records shapes in drawing order,
turns each run of one kind into flat pixel indices in one vectorised pass, and paints
them in order (a later shape covers an earlier one, as in OpenCV).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

XY_SHIFT = 16  # OpenCV's fixed point: 16 fractional bits
XY_HALF = 1 << (XY_SHIFT - 1)
INT32_MAX = 2**31 - 1  # OpenCV takes int32 coordinates
# OpenCV's sine table, one entry per degree from 0 to 450 (cos(a) = sin(90 + a)): sines
# rounded to 7 decimals, stored as float32.
SIN_TABLE = np.round(np.sin(np.deg2rad(np.arange(451))), 7).astype(np.float32).astype(np.float64)


class Drawing:
    """Shapes recorded in drawing order, rasterised and painted together by `paint`."""

    def __init__(self) -> None:
        self._shapes: list[tuple[tuple, tuple, tuple]] = []

    def ellipse(self, center, axes, angle: int, color) -> None:
        """A filled ellipse as OpenCV fills cv2.ellipse2Poly(center, axes, angle, 0, 360, 1)."""
        self._shapes.append((("ellipse",), (*center, *axes, angle), tuple(color)))

    def circle(self, center, radius: int, color) -> None:
        """A filled circle, as cv2.circle(..., thickness=-1)."""
        self._shapes.append((("circle", int(radius)), tuple(center), tuple(color)))

    def line(self, p0, p1, thickness: int, color) -> None:
        """A line of `thickness` ≥ 2 pixels with round caps, as cv2.line."""
        if thickness < 2:
            raise ValueError(f"line thickness must be at least 2, got {thickness}")
        self._shapes.append((("line", int(thickness)), (*p0, *p1), tuple(color)))

    def paint(self, canvas: np.ndarray) -> None:
        """Draw the recorded shapes on an (h, w, 3) uint8 canvas, in order; then forget them.

        Each kind of shape is rasterised in one pass. Where shapes overlap the last one
        drawn wins: every pixel keeps the highest shape number that covers it."""
        if not self._shapes:
            return
        h, w = canvas.shape[:2]
        keys = [key for key, _, _ in self._shapes]
        colors = np.array([color for _, _, color in self._shapes], np.uint8)
        pixels, shape = [], []
        for key in dict.fromkeys(keys):
            index = np.array([i for i, k in enumerate(keys) if k == key])
            geometry = np.array([self._shapes[i][1] for i in index], np.int64)
            if np.abs(geometry).max() > INT32_MAX:
                raise ValueError(
                    f"cannot draw beyond ±{INT32_MAX} pixels: {key[0]} {geometry.tolist()}"
                )
            if key[0] == "ellipse":
                polygons = ellipse_polygons(geometry[:, :2], geometry[:, 2:4], geometry[:, 4])
                found, owner = fill_convex(polygons, 0, w, h)
            elif key[0] == "circle":
                found, owner = circles(geometry, key[1], w, h)
            else:
                found, owner = thick_lines(geometry[:, :2], geometry[:, 2:], key[1], w, h)
            pixels.append(found)
            shape.append(index[owner])
        pixels, shape = np.concatenate(pixels), np.concatenate(shape)
        top = np.zeros(h * w, np.int32)  # 1 + the last shape on each pixel
        np.maximum.at(top, pixels, (shape + 1).astype(np.int32))
        top = top[pixels] - 1
        # Through one 1-D view per channel: much faster than assigning (N, 3) rows.
        for c in range(canvas.shape[2]):
            canvas.reshape(h * w, -1)[:, c][pixels] = colors[top, c]
        self._shapes.clear()


def ellipse_polygons(centers: np.ndarray, axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(M, 361, 2) int64 vertices of whole ellipses in 1° steps, as cv2.ellipse2Poly
    (which also drops repeated consecutive vertices: they change neither outline nor fill)."""
    centers, axes = np.asarray(centers, np.float64), np.asarray(axes, np.float64)
    angles = np.asarray(angles, np.int64) % 360
    cos, sin = SIN_TABLE[450 - angles][:, None], SIN_TABLE[angles][:, None]
    steps = np.arange(361)
    x = axes[:, :1] * SIN_TABLE[450 - steps]
    y = axes[:, 1:] * SIN_TABLE[steps]
    px = centers[:, :1] + x * cos - y * sin
    py = centers[:, 1:] + x * sin + y * cos
    return np.rint(np.stack([px, py], axis=-1)).astype(np.int64)


def circles(centers: np.ndarray, radius: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of filled circles at integer `centers` (K, 2): (flat indices, shape index)."""
    dx, dy = _disc(radius)
    x = centers[:, :1] + dx
    y = centers[:, 1:] + dy
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    owner = np.broadcast_to(np.arange(len(centers))[:, None], x.shape)
    return (y * w + x)[inside], owner[inside]


@lru_cache
def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets of OpenCV's filled circle: the midpoint circle walk, one octant at a
    time, each step filling the four rows it reaches."""
    rows: dict[int, int] = {}  # row offset -> half width
    dx, dy, err, plus, minus = radius, 0, 0, 1, 2 * radius - 1
    while dx >= dy:
        for row, half in ((dy, dx), (-dy, dx), (dx, dy), (-dx, dy)):
            rows[row] = max(rows.get(row, -1), half)
        dy += 1
        err += plus
        plus += 2
        if err > 0:
            err -= minus
            dx -= 1
            minus -= 2
    offsets = [(x, row) for row, half in rows.items() for x in range(-half, half + 1)]
    return tuple(np.array(v, np.int64) for v in zip(*offsets))


def thick_lines(
    p0: np.ndarray, p1: np.ndarray, thickness: int, w: int, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of lines (L, 2) -> (L, 2) of `thickness` ≥ 2, as cv2.line: a quadrilateral
    in 16.16 fixed point, filled, plus a filled circle at each end."""
    p0, p1 = np.array(p0, np.int64), np.array(p1, np.int64)
    # OpenCV 4.12 clips the quadrilateral's 16.16 edges with int64 products of their x and
    # y extents: |dx·dy| ≥ 2**31 px² can overflow and draw garbage. Such lines (over 46341
    # pixels both ways) are first clipped to the canvas grown by the thickness, as 4.13 does.
    far = np.prod(np.abs(p1 - p0).astype(np.float64) + thickness + 2, axis=1) >= 2.0**31
    if far.any():
        a, b = p0[far] + thickness, p1[far] + thickness
        size = (w + 2 * thickness, h + 2 * thickness)
        x1, y1, x2, y2, _ = _clip(a[:, 0], a[:, 1], b[:, 0], b[:, 1], *size)
        p0[far] = np.stack([x1, y1], axis=1) - thickness
        p1[far] = np.stack([x2, y2], axis=1) - thickness
    dx = (p0[:, 0] - p1[:, 0]).astype(np.float64)
    dy = (p1[:, 1] - p0[:, 1]).astype(np.float64)
    length2 = dx * dx + dy * dy
    quad = np.abs(length2) > np.finfo(np.float64).eps
    half = ((thickness << (XY_SHIFT - 1)) + (thickness & 1) * XY_HALF) / np.sqrt(length2[quad])
    offset = np.stack([np.rint(dy[quad] * half), np.rint(dx[quad] * half)], axis=1).astype(np.int64)
    a, b = p0[quad] << XY_SHIFT, p1[quad] << XY_SHIFT
    corners = np.stack([a + offset, a - offset, b - offset, b + offset], axis=1)
    fill, fill_owner = fill_convex(corners, XY_SHIFT, w, h)
    radius = ((thickness << (XY_SHIFT - 1)) + XY_HALF) >> XY_SHIFT
    caps, caps_owner = circles(np.stack([p0, p1], axis=1).reshape(-1, 2), radius, w, h)
    return _merge((fill, np.flatnonzero(quad)[fill_owner]), (caps, caps_owner // 2))


def fill_convex(polygons: np.ndarray, shift: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of filled convex polygons (M, V, 2) with `shift` fractional bits, as OpenCV's
    FillConvexPoly: the outline drawn as lines, then each row filled between the two
    chains of edges that run down from the top vertex. (flat indices, polygon index)."""
    m, v = polygons.shape[:2]
    vx, vy = polygons[..., 0], polygons[..., 1]
    outline = _outline(vx, vy, w, h) if shift == 0 else _fixed_outline(vx, vy, w, h)

    delta = (1 << shift) >> 1
    ty = (vy + delta) >> shift  # the row of each vertex
    top, bottom = ty.min(axis=1), ty.max(axis=1)
    left, right = (vx.min(axis=1) + delta) >> shift, (vx.max(axis=1) + delta) >> shift
    # The last row is left to the outline: OpenCV stops when the chains meet there.
    first, last = np.maximum(top, 0), np.minimum(bottom - 1, h - 1)
    shown = (v >= 3) & (right >= 0) & (bottom >= 0) & (left < w) & (top < h)
    rows = np.where(shown, np.maximum(last - first + 1, 0), 0)
    owner, row = _steps(rows)
    y = first[owner] + row
    # The two chains, as vertex sequences from the (first) top vertex either way round.
    start = vy.argmin(axis=1)[:, None]
    x16 = (vx << (XY_SHIFT - shift)).ravel()
    ty = ty.ravel()
    xa, xb = (
        _chain_x(ty[chain], x16[chain], owner, y)
        for chain in (_cycle(start, np.arange(v), m), _cycle(start, -np.arange(v), m))
    )
    x1 = np.maximum((np.minimum(xa, xb) + XY_HALF) >> XY_SHIFT, 0)
    x2 = np.minimum((np.maximum(xa, xb) + XY_HALF) >> XY_SHIFT, w - 1)
    return _merge(outline, _spans(y, x1, x2, owner, w))


def _outline(vx, vy, w, h) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the closed outlines of integer polygons (M, V): their vertices on the
    canvas, plus the lines of the edges that are longer than a step or leave the canvas."""
    px, py = np.roll(vx, 1, axis=1), np.roll(vy, 1, axis=1)
    on = (vx >= 0) & (vx < w) & (vy >= 0) & (vy < h)
    corners = ((vy * w + vx)[on], np.nonzero(on)[0])
    lines = (np.maximum(np.abs(vx - px), np.abs(vy - py)) > 1) | ~on | ~np.roll(on, 1, axis=1)
    owner = np.nonzero(lines)[0]
    return _merge(corners, _lines(px[lines], py[lines], vx[lines], vy[lines], owner, w, h))


def _fixed_outline(vx, vy, w, h) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the closed outlines of 16.16 polygons (M, V)."""
    px, py = np.roll(vx, 1, axis=1), np.roll(vy, 1, axis=1)
    owner = np.repeat(np.arange(len(vx)), vx.shape[1])
    return _fixed_lines(px.ravel(), py.ravel(), vx.ravel(), vy.ravel(), owner, w, h)


def _cycle(start: np.ndarray, steps: np.ndarray, m: int) -> np.ndarray:
    """Flat indices into (m, V) rows that visit each row's vertices cyclically from `start`."""
    v = len(steps)
    return np.arange(0, m * v, v)[:, None] + (start + steps) % v


def _merge(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, owner) pairs joined."""
    return np.concatenate([p for p, _ in parts]), np.concatenate([o for _, o in parts])


def _chain_x(ty_c, x_c, owner, y) -> np.ndarray:
    """16.16 x of one chain of polygon edges on each (polygon `owner`, row `y`).

    OpenCV walks the chain's vertices from the top one; a row takes the edge that ends at
    the first vertex below it, entered from the vertex before that at the row where the
    previous edge ended (the running maximum), stepping x by a rounded slope per row."""
    reached = np.maximum.accumulate(ty_c, axis=1)
    # The first vertex below each row, found for all polygons in one search.
    base = reached[:, :1]
    stride = int((reached[:, -1:] - base).max(initial=0)) + 2
    keys = (np.arange(len(ty_c))[:, None] * stride + reached - base).ravel()
    end = np.searchsorted(keys, owner * stride + y - base[owner, 0], side="right")
    y0, y1 = reached.ravel()[end - 1], ty_c.ravel()[end]
    xs, xe = x_c.ravel()[end - 1], x_c.ravel()[end]
    slope = _div((xe - xs) * 2 + (y1 - y0), 2 * (y1 - y0))
    return xs + (y - y0) * slope


def _spans(y, x1, x2, owner, w) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices of row spans [x1, x2] (empty where x2 < x1)."""
    lengths = np.maximum(x2 - x1 + 1, 0)
    skip = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pixels = np.repeat(y * w + x1, lengths) + np.arange(len(skip)) - skip
    return pixels, np.repeat(owner, lengths)


def _lines(x1, y1, x2, y2, owner, w, h) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of 1-pixel lines between integer points: OpenCV's 8-connected Bresenham walk
    from the left end, after clipping to the canvas."""
    x1, y1, x2, y2, owner = _clip_some(x1, y1, x2, y2, owner, w, h)
    swap = x2 < x1
    x1, x2 = np.where(swap, x2, x1), np.where(swap, x1, x2)
    y1, y2 = np.where(swap, y2, y1), np.where(swap, y1, y2)
    dx, dy = x2 - x1, y2 - y1
    step_y = np.where(dy < 0, -1, 1)
    steep = np.abs(dy) > dx
    major, minor = np.where(steep, np.abs(dy), dx), np.where(steep, dx, np.abs(dy))
    line, t = _steps(major + 1)
    # After t steps along the major axis the error term has crossed zero this many times.
    n_major = major[line]
    side = np.where(
        n_major > 0, (2 * minor[line] * t + n_major - 1) // np.maximum(2 * n_major, 1), 0
    )
    steep = steep[line]
    x = x1[line] + np.where(steep, side, t)
    y = y1[line] + step_y[line] * np.where(steep, t, side)
    return y * w + x, owner[line]


def _fixed_lines(x1, y1, x2, y2, owner, w, h) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of 1-pixel lines between 16.16 points (OpenCV's Line2): clipped to the
    canvas, stepped one pixel along the longer axis with a truncated 16.16 slope, plus the
    rounded end point; pixels off the canvas are dropped."""
    x1, y1, x2, y2, owner = _clip_some(x1, y1, x2, y2, owner, w << XY_SHIFT, h << XY_SHIFT)
    dx, dy = x2 - x1, y2 - y1
    along_x = np.abs(dx) > np.abs(dy)
    swap = np.where(along_x, dx < 0, dy < 0)
    x1, x2 = np.where(swap, x2, x1), np.where(swap, x1, x2)
    y1, y2 = np.where(swap, y2, y1), np.where(swap, y1, y2)
    dx, dy = x2 - x1, y2 - y1
    one = 1 << XY_SHIFT
    slope = np.where(along_x, _div(dy * one, np.abs(dx) | 1), _div(dx * one, np.abs(dy) | 1))
    count = np.where(along_x, dx, dy) >> XY_SHIFT
    line, t = _steps(count + 1)
    x0, y0, slope, along_x = x1[line] + XY_HALF, y1[line] + XY_HALF, slope[line], along_x[line]
    x = np.where(along_x, (x0 >> XY_SHIFT) + t, (x0 + t * slope) >> XY_SHIFT)
    y = np.where(along_x, (y0 + t * slope) >> XY_SHIFT, (y0 >> XY_SHIFT) + t)
    x = np.concatenate([(x2 + XY_HALF) >> XY_SHIFT, x])
    y = np.concatenate([(y2 + XY_HALF) >> XY_SHIFT, y])
    owner = np.concatenate([owner, owner[line]])
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return (y * w + x)[inside], owner[inside]


def _steps(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For items with `counts` steps each: the item of every step and its number from 0."""
    item = np.repeat(np.arange(len(counts)), counts)
    return item, np.arange(len(item)) - np.repeat(np.cumsum(counts) - counts, counts)


def _clip_some(x1, y1, x2, y2, owner, w, h):
    """Segments clipped to the canvas where they leave it; those wholly outside dropped."""
    out = np.flatnonzero(
        (x1 < 0) | (x1 >= w) | (y1 < 0) | (y1 >= h) | (x2 < 0) | (x2 >= w) | (y2 < 0) | (y2 >= h)
    )
    if len(out) == 0:
        return x1, y1, x2, y2, owner
    x1, y1, x2, y2 = x1.copy(), y1.copy(), x2.copy(), y2.copy()
    x1[out], y1[out], x2[out], y2[out], kept = _clip(x1[out], y1[out], x2[out], y2[out], w, h)
    drawn = np.ones(len(x1), bool)
    drawn[out] = kept
    return x1[drawn], y1[drawn], x2[drawn], y2[drawn], owner[drawn]


def _clip(x1, y1, x2, y2, w, h):
    """OpenCV's clipLine on int64 arrays: segments cut to the [0, w) x [0, h) box, in
    OpenCV's order and integer arithmetic; also whether anything is left of each."""
    right, bottom = w - 1, h - 1

    def code(x, y):
        return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    def code_x(x):
        return (x < 0) + (x > right) * 2

    c1, c2 = code(x1, y1), code(x2, y2)
    cut = ((c1 & c2) == 0) & ((c1 | c2) != 0)
    todo = cut & ((c1 & 12) != 0)
    edge = np.where(c1 < 8, 0, bottom)
    x1 = np.where(todo, x1 + _div((edge - y1) * (x2 - x1), y2 - y1), x1)
    y1 = np.where(todo, edge, y1)
    c1 = np.where(todo, code_x(x1), c1)
    todo = cut & ((c2 & 12) != 0)
    edge = np.where(c2 < 8, 0, bottom)
    x2 = np.where(todo, x2 + _div((edge - y2) * (x2 - x1), y2 - y1), x2)
    y2 = np.where(todo, edge, y2)
    c2 = np.where(todo, code_x(x2), c2)
    cut &= ((c1 & c2) == 0) & ((c1 | c2) != 0)
    todo = cut & (c1 != 0)
    edge = np.where(c1 == 1, 0, right)
    y1 = np.where(todo, y1 + _div((edge - x1) * (y2 - y1), x2 - x1), y1)
    x1 = np.where(todo, edge, x1)
    c1 = np.where(todo, 0, c1)
    todo = cut & (c2 != 0)
    edge = np.where(c2 == 1, 0, right)
    y2 = np.where(todo, y2 + _div((edge - x2) * (y2 - y1), x2 - x1), y2)
    x2 = np.where(todo, edge, x2)
    c2 = np.where(todo, 0, c2)
    return x1, y1, x2, y2, (c1 | c2) == 0


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C's integer division (truncated toward zero); 0 where b is 0 (such results are not
    used)."""
    b = np.where(b == 0, 1, b)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)
