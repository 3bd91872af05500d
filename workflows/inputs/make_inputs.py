"""Make the example workflows' inputs from assets/skier.jpg (COCO val2017 image 785, CC BY 2.0).

- dwpose_skier_pan.mp4: a slow camera pan over the photo (24 frames, 12 fps, 512x320,
  H.264): a real person moving through the frame, for the video workflow.
- dwpose_skier_keypoints.json: the photo's COCO-WholeBody ground-truth keypoints as
  POSE_KEYPOINT (labelled points seen, the others not; as assets/make_picture.py draws
  them), for the keypoints workflow.

The pack copies them (and the photo, as dwpose_skier.jpg) into ComfyUI's input folder when
they are missing there (nodes.py, install_example_inputs). Run from the repository:
python workflows/inputs/make_inputs.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "assets"))

from make_picture import ANNOTATIONS, IMAGE_ID, PHOTO, annotated_frame  # noqa: E402

from comfyui_dwpose import to_pose_keypoint  # noqa: E402
from comfyui_dwpose.images import load_image  # noqa: E402
from comfyui_dwpose.result import save_json  # noqa: E402

HERE = Path(__file__).resolve().parent
FRAMES, FPS, WIDTH, HEIGHT = 24, 12, 512, 320


def pan(photo: np.ndarray) -> list[np.ndarray]:
    """WIDTH x HEIGHT windows sliding left to right (and a little down) across the photo."""
    height, width = photo.shape[:2]
    xs = np.linspace(0, width - WIDTH, FRAMES).round().astype(int)
    ys = np.linspace(0, height - HEIGHT, FRAMES).round().astype(int)
    return [np.ascontiguousarray(photo[y : y + HEIGHT, x : x + WIDTH]) for x, y in zip(xs, ys)]


def write_video(frames: list[np.ndarray], path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryslow"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def main() -> None:
    photo = load_image(PHOTO)
    height, width = photo.shape[:2]
    write_video(pan(photo), HERE / "dwpose_skier_pan.mp4")
    frame = annotated_frame(json.loads(ANNOTATIONS.read_text()), IMAGE_ID, width, height)
    save_json(to_pose_keypoint(frame), HERE / "dwpose_skier_keypoints.json")
    for name in ("dwpose_skier_pan.mp4", "dwpose_skier_keypoints.json"):
        print(f"{name}: {(HERE / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
