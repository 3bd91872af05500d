"""TEMPORARY minimal COCO-WholeBody reader, until ``comfyui_dwpose.train.data`` (datasets
and augmentation, built in parallel) is merged: top-down samples of the dataset contract
(``batches.py``) without augmentation, from ground-truth boxes or a detection file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..images import load_image
from ..pose import box_center_scale, crop, crop_matrix
from .coco_eval import PART_FIELDS


class CocoWholeBodySamples:
    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        input_size: tuple[int, int],
        detections: str | Path | None = None,
    ) -> None:
        data = json.loads(Path(ann_file).read_text())
        files = {im["id"]: Path(image_dir) / im["file_name"] for im in data["images"]}
        self.input_size = tuple(input_size)
        self.entries = []
        if detections is None:
            for ann in data["annotations"]:
                points = np.concatenate([
                    np.asarray(ann[f], np.float32).reshape(n, 3) for f, n in PART_FIELDS
                ])  # fmt: skip
                if ann.get("iscrowd") or not (points[:, 2] > 0).any() or min(ann["bbox"][2:]) <= 0:
                    continue
                self.entries.append(
                    (files[ann["image_id"]], ann["image_id"], ann["bbox"], 1.0, points)
                )
        else:
            for det in json.loads(Path(detections).read_text()):
                if det.get("category_id", 1) == 1 and det["image_id"] in files:
                    empty = np.zeros((133, 3), np.float32)
                    self.entries.append(
                        (files[det["image_id"]], det["image_id"], det["bbox"], det["score"], empty)
                    )

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        path, image_id, (x, y, w, h), box_score, points = self.entries[index]
        center, scale = box_center_scale(np.array([[x, y, x + w, y + h]]), self.input_size)
        image = load_image(path)
        matrix = crop_matrix(center[0], scale[0], self.input_size)
        warped = crop(image, center[0], scale[0], self.input_size)
        keypoints = points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(warped.transpose(2, 0, 1))),
            "keypoints": keypoints.astype(np.float32),
            "visible": np.minimum(1, points[:, 2]).astype(np.float32),
            "meta": {
                "image_id": image_id,
                "center": center[0].tolist(),
                "scale": scale[0].tolist(),
                "box_score": float(box_score),
            },
        }
