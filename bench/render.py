"""Render speed: hand lines drawn as OpenCV 4.12 draws them (raster.thick_line) against
plain cv2.line (what render.py did before; its pixels move under OpenCV 4.13+).

Frames: the golden references' keypoints (tests/data/golden, official_rgb and
official_rgb_res512: 2 people each, 640x425 to 768x512), rendered at their own size and
at 1024 and 2048 short side. Both variants run interleaved in one process; CPU time per
frame (process_time, the best of 3 passes over the 8 frames), median over 7 rounds, and
the median of the per-round ratios. An A/A row (cv2.line against itself) shows the noise.

Run:  python bench/render.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import machine_line  # noqa: E402

from comfyui_dwpose import PoseFrame, render  # noqa: E402

GOLDEN = ROOT / "tests" / "data" / "golden"
ROUNDS = 7


def frames() -> list[PoseFrame]:
    out = []
    for folder in sorted(GOLDEN.glob("*/official_rgb*")):
        data = np.load(folder / "keypoints.npz")
        h, w = np.asarray(Image.open(folder / "pose.png")).shape[:2]
        n = len(data["raw_keypoints"])
        boxes, box_scores = np.zeros((n, 4)), np.zeros(n)
        out.append(PoseFrame(data["raw_keypoints"], data["raw_scores"], boxes, box_scores, w, h))
    return out


def opencv_line(canvas, start, end, thickness, color):
    """The drawing render.py did before."""
    cv2.line(canvas, start, end, color, thickness)


def per_frame(batch: list[PoseFrame], lines, size: int | None) -> float:
    """Best-of-3 CPU seconds per frame rendered with `lines` drawing the hand lines."""
    render.thick_line = lines
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for frame in batch:
            scale = 1 if size is None else size / min(frame.width, frame.height)
            render.render_pose(frame, round(frame.width * scale), round(frame.height * scale))
        best = min(best, (time.process_time() - start) / len(batch))
    return best


def main() -> None:
    batch = frames()
    exact = render.thick_line
    print(machine_line(numpy=np.__version__, OpenCV=cv2.__version__))
    print()
    print("| map size | cv2.line (ms/frame) | thick_line (ms/frame) | ratio | A/A ratio |")
    print("|---|---|---|---|---|")
    for size in (None, 1024, 2048):
        before, after, again = [], [], []
        for _ in range(ROUNDS):
            before.append(per_frame(batch, opencv_line, size))
            after.append(per_frame(batch, exact, size))
            again.append(per_frame(batch, opencv_line, size))
        ratio = np.median(np.array(after) / before)
        noise = np.median(np.array(again) / before)
        label = "frame's own" if size is None else f"{size} short side"
        print(
            f"| {label} | {np.median(before) * 1e3:.2f} | {np.median(after) * 1e3:.2f} "
            f"| {ratio:.2f} | {noise:.2f} |"
        )
    render.thick_line = exact


if __name__ == "__main__":
    main()
