"""raster.thick_line draws what cv2.line draws in OpenCV 4.12 (upstream's maps), pixel for
pixel, whatever OpenCV is installed.

Lines that stay on the canvas are drawn the same by every OpenCV 4.x, so there the
reimplementation of 4.12's thick line is compared with the installed cv2.line always; lines
that leave the canvas only under OpenCV 4.8-4.12 (4.13 clips them first: the difference
thick_line removes). tests/opencv_matrix.py runs the golden maps under each OpenCV build.
"""

import cv2
import numpy as np
import pytest

from comfyui_dwpose.raster import _line_4_12, thick_line

OPENCV = tuple(int(v) for v in cv2.__version__.split(".")[:2])
DRAWS_LIKE_4_12 = (4, 8) <= OPENCV < (4, 13)  # measured: tests/opencv_matrix.py


def random_lines(rng, count, w, h, spread, thickness):
    """`count` lines with ends up to `spread` pixels around a w x h canvas, a few of them
    single points, horizontal or vertical."""
    lo, hi = (-spread, -spread), (w + spread, h + spread)
    starts = rng.integers(lo, hi, (count, 2))
    ends = rng.integers(lo, hi, (count, 2))
    ends[::7] = starts[::7]  # points
    ends[1::7, 1] = starts[1::7, 1]  # horizontal
    ends[2::7, 0] = starts[2::7, 0]  # vertical
    colors = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(count)]
    return starts.tolist(), ends.tolist(), colors


def line_4_12(canvas, start, end, thickness, color):
    _line_4_12(canvas, *start, *end, thickness, color)


def compare(rng, w, h, spread, draw=thick_line, lines=40):
    """Draw random lines over random pixels with cv2.line and `ours`; the pixels that differ."""
    thickness = int(rng.integers(2, 9))
    background = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    theirs, mine = background.copy(), background.copy()
    starts, ends, colors = random_lines(rng, lines, w, h, spread, thickness)
    if spread < 0:  # keep the lines (and their round ends) inside
        starts = np.clip(starts, thickness, [w - 1 - thickness, h - 1 - thickness]).tolist()
        ends = np.clip(ends, thickness, [w - 1 - thickness, h - 1 - thickness]).tolist()
    for start, end, color in zip(starts, ends, colors):
        cv2.line(theirs, start, end, color, thickness)
        draw(mine, start, end, thickness, color)
    return int((theirs != mine).any(axis=-1).sum())


def test_lines_on_the_canvas_equal_opencv():
    """There thick_line is cv2.line; the reimplementation draws the same."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        w, h = (int(v) for v in rng.integers(20, 200, 2))
        assert compare(rng, w, h, spread=-1, draw=line_4_12) == 0


@pytest.mark.skipif(not DRAWS_LIKE_4_12, reason=f"OpenCV {cv2.__version__} clips lines first")
@pytest.mark.parametrize("spread", [3, 60, 2_000, 30_000])
def test_lines_leaving_the_canvas_equal_opencv_4_12(spread):
    """Ends a few pixels off the canvas up to ±30000 px, tiny canvases included."""
    rng = np.random.default_rng(spread)
    for _ in range(150):
        w, h = (int(v) for v in rng.integers(1, 120, 2))
        assert compare(rng, w, h, spread) == 0


def test_lines_beyond_fixed_point_are_clipped_first():
    """Past ±32767 px OpenCV 4.12's 16.16 corners do not fit in int32 (and its clipping
    overflows for |dx·dy| ≥ 2**31 px²): such lines are clipped to the canvas grown by the
    thickness first, the way 4.13 does, which draws the same as the clipped ends."""
    rng = np.random.default_rng(1)
    w, h, thickness = 90, 70, 2
    lines = [((-30_000, -30_000), (30_000, 30_000)), ((-32_000, 31_000), (32_000, -31_000))]
    for _ in range(200):
        start = [int(rng.integers(0, w)), int(rng.integers(0, h))]  # one end on the canvas
        end = rng.integers(-200_000, 200_000, 2)
        end[rng.integers(0, 2)] = rng.choice([-1, 1]) * rng.integers(40_000, 200_000)
        lines.append((start, end.tolist()))
    for start, end in lines:
        ok, a, b = cv2.clipLine(
            (-thickness, -thickness, w + 2 * thickness, h + 2 * thickness), start, end
        )
        assert ok
        ours, clipped = np.zeros((h, w, 3), np.uint8), np.zeros((h, w, 3), np.uint8)
        thick_line(ours, start, end, thickness, (255, 255, 255))
        cv2.line(clipped, a, b, (255, 255, 255), thickness)
        np.testing.assert_array_equal(ours, clipped)
    # A line that passes nowhere near the canvas draws nothing.
    canvas = np.zeros((h, w, 3), np.uint8)
    thick_line(canvas, (-90_000, -5), (90_000, -40_000), thickness, (255, 255, 255))
    assert not canvas.any()


def test_bad_lines_are_refused():
    canvas = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="thickness must be at least 2"):
        thick_line(canvas, (0, 0), (3, 3), 1, (255, 0, 0))
    # OpenCV's 16.16 int32 coordinates end at 32767 px: a wider map cannot have its lines.
    wide = np.zeros((1, 40_000, 3), np.uint8)
    with pytest.raises(ValueError, match="cannot draw lines on a 40000x1 map"):
        thick_line(wide, (0, -1), (39_999, 1), 2, (255, 0, 0))
    thick_line(wide, (5, -1), (30_000, 0), 2, (255, 0, 0))  # nearer the origin: fine
    assert wide[0, 5:30_001, 0].all() and not wide[0, 30_002:].any()
