"""Draw assets/skier_pose.jpg, the README's picture: the demo photo beside its pose map.

Real DWPose weights cannot be downloaded where this project is built, so the map is not
estimated: it is `render_pose` of the photo's COCO-WholeBody ground-truth annotation
(tests/data/coco/test_coco_wholebody.json; labelled points drawn, the others not), drawn
exactly as the estimator's results are. Run from the repository: python assets/make_picture.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from comfyui_dwpose import PoseFrame, render_pose
from comfyui_dwpose.images import load_image

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets" / "skier.jpg"  # COCO val2017 image 785
ANNOTATIONS = ROOT / "tests" / "data" / "coco" / "test_coco_wholebody.json"
IMAGE_ID = 785
PARTS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")  # 133 points


def annotated_frame(annotations: dict, image_id: int, width: int, height: int) -> PoseFrame:
    """The image's people as a PoseFrame: labelled points score 1, unlabelled 0."""
    people = [a for a in annotations["annotations"] if a["image_id"] == image_id]
    points = np.array(
        [np.concatenate([np.reshape(a[p], (-1, 3)) for p in PARTS]) for a in people], np.float64
    )
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in people)])
    scores = (points[..., 2] > 0).astype(np.float32)
    return PoseFrame(
        points[..., :2], scores, boxes, np.ones(len(people), np.float32), width, height
    )


def main() -> None:
    photo = load_image(PHOTO)
    height, width = photo.shape[:2]
    frame = annotated_frame(json.loads(ANNOTATIONS.read_text()), IMAGE_ID, width, height)
    picture = np.concatenate([photo, render_pose(frame)], axis=1)
    out = ROOT / "assets" / "skier_pose.jpg"
    Image.fromarray(picture).save(out, quality=90)
    print(f"{out.relative_to(ROOT)}: {picture.shape[1]}x{picture.shape[0]}, {len(frame)} person")


if __name__ == "__main__":
    main()
