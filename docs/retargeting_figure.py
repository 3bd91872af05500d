"""Draws docs/retargeting.png: a driving frame, the reference, and the frame retargeted
onto the reference, side by side, with `render_pose` (synthetic dancers, tests/dancer.py).

Run:  python docs/retargeting_figure.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dancer import ADULT, CHILD, NECK, dance, frame_of, place, rest_pose  # noqa: E402

from comfyui_dwpose import render_pose  # noqa: E402
from comfyui_dwpose.images import save_image  # noqa: E402
from comfyui_dwpose.retarget import retarget  # noqa: E402

HEIGHT = 360  # of each panel
FRAME = 9  # the driving frame shown: arms up, weight on one leg


def panel(frame, title: str) -> np.ndarray:
    width = round(frame.width * HEIGHT / frame.height)
    image = render_pose(frame, width, HEIGHT, feet=True)
    cv2.putText(
        image, title, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA
    )
    return image


def main() -> None:
    driving = [frame_of([p], size=(480, 480)) for p in dance(ADULT, 40)]
    for frame in driving:
        frame.keypoints -= [80, 30]  # the dance in the middle of the canvas
    reference = frame_of([place(CHILD, rest_pose(), NECK, (240, 150))], size=(480, 480))
    out = retarget(driving, reference)
    gap = np.full((HEIGHT, 8, 3), 64, np.uint8)
    figure = np.concatenate([
        panel(driving[FRAME], "driving frame (adult dancer)"), gap,
        panel(reference, "reference (child-like character)"), gap,
        panel(out[FRAME], "retargeted (bones, ground)"),
    ], axis=1)  # fmt: skip
    save_image(figure, ROOT / "docs" / "retargeting.png")


if __name__ == "__main__":
    main()
