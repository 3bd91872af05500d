"""Draw assets/video_workflow.png: frames of workflows/dwpose_skier_pan.mp4 above the same
frames of the pose video that workflows/dwpose_video.json made from it in ComfyUI.

The pose video given on the command line comes from ComfyUI's output folder (SaveVideo's
dwpose/pose_video_*.mp4). Made with the test models (tests/data/golden stand-ins, not the
DWPose weights, which cannot be downloaded where this project is built), so the skeletons
show what the workflow produces, not DWPose's accuracy. Run from the repository:
python assets/make_video_picture.py OUTPUT/dwpose/pose_video_00001_.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from comfyui_dwpose.video import read_frames

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "workflows" / "inputs" / "dwpose_skier_pan.mp4"
PICKED = (0, 8, 16, 23)
TILE = (256, 160)


def tiles(path: Path) -> np.ndarray:
    frames = [f.image for f in read_frames(path)]
    row = [np.asarray(Image.fromarray(frames[i]).resize(TILE, Image.BICUBIC)) for i in PICKED]
    return np.concatenate(row, axis=1)


def main() -> None:
    picture = np.concatenate([tiles(SOURCE), tiles(Path(sys.argv[1]))], axis=0)
    out = ROOT / "assets" / "video_workflow.png"
    Image.fromarray(picture).save(out, optimize=True)
    print(f"{out.relative_to(ROOT)}: {picture.shape[1]}x{picture.shape[0]}")


if __name__ == "__main__":
    main()
