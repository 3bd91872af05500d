"""COCO-WholeBody and UBody annotation files (and person detections) into top-down records.

One record per person: image, box, box score, 133 keypoints and their visibility, in the
COCO-WholeBody order body 17, feet 6, face 68, left hand 21, right hand 21 (the json fields
keypoints, foot_kpts, face_kpts, lefthand_kpts, righthand_kpts). Records are numpy columns,
parsed once: DataLoader workers share them instead of re-reading json or copying dicts.

Which annotations become samples is mmpose 1.3.2's rule (BaseCocoStyleDataset,
CocoWholeBodyDataset), counted in `Records.skipped`:
- the box (x, y, w, h) is clipped to the image as x1 = clip(x, 0, W-1), x2 = clip(x+w, 0, W-1)
  (same for y); a clipped box with no width or height is dropped ("empty_box");
- crowd annotations are dropped ("crowd");
- `num_keypoints` (the json's count, of the 17 body points) of 0 is dropped ("no_keypoints"),
  even when face, hands or feet are labelled;
- all keypoint coordinates <= 0 is dropped ("no_keypoints");
- an annotation without "bbox" or "keypoints" is dropped ("no_box");
- with `sample_interval` n > 1, only images whose id is a multiple of n are kept (DWPose
  reads UBody with n = 10).
A keypoint is visible (1.0) when its v is > 0 (labelled, occluded or not), else 0.0.
Detected boxes (a COCO results file) replace the ground truth for evaluation: people
(category 1) only, xywh -> xyxy without clipping, dummy keypoints (0, 0) and visibility 1.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import schema

# The 15 UBody scenes DWPose trains on (mmpose's coco-ubody configs).
UBODY_SCENES = (
    "Magic_show", "Entertainment", "ConductMusic", "Online_class", "TalkShow",
    "Speech", "Fitness", "Interview", "Olympic", "TVShow", "Singing",
    "SignLanguage", "Movie", "LiveVlog", "VideoConference",
)  # fmt: skip
PART_FIELDS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
PART_SIZES = (17, 6, 68, 21, 21)


class AnnotationError(ValueError):
    """An annotation or detection file that cannot be read as COCO-WholeBody, with the reason."""


@dataclass
class Records:
    """Top-down person records as columns.

    Per image: `image_paths`, `image_ids`, `image_sizes` (w, h). Per person: `image_index`
    (row of the image columns), `ids` (annotation id, or the detection's position),
    `boxes` xyxy float32, `box_scores`, `keypoints` (N, 133, 2) float32 image pixels,
    `visible` (N, 133) float32 0/1.
    """

    image_paths: list[str]
    image_ids: np.ndarray
    image_sizes: np.ndarray
    image_index: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: np.ndarray) -> Records:
        """The records where `keep` (a boolean mask or indices over people) holds."""
        return Records(
            self.image_paths, self.image_ids, self.image_sizes, self.image_index[keep],
            self.ids[keep], self.boxes[keep], self.box_scores[keep], self.keypoints[keep],
            self.visible[keep], Counter(self.skipped),
        )  # fmt: skip

    def missing_images(self) -> np.ndarray:
        """Per image row: True where people refer to the image and it is not a file."""
        missing = np.zeros(len(self.image_paths), bool)
        for row in np.unique(self.image_index):
            missing[row] = not os.path.isfile(self.image_paths[row])
        return missing


def concat(parts: list[Records]) -> Records:
    """Several datasets as one (mmpose's CombinedDataset over COCO-WholeBody and UBody scenes)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    offsets = np.cumsum([0] + [len(p.image_paths) for p in parts[:-1]])
    skipped = Counter()
    for p in parts:
        skipped.update(p.skipped)
    return Records(
        [path for p in parts for path in p.image_paths],
        np.concatenate([p.image_ids for p in parts]),
        np.concatenate([p.image_sizes for p in parts]),
        np.concatenate([p.image_index + o for p, o in zip(parts, offsets)]),
        np.concatenate([p.ids for p in parts]),
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.box_scores for p in parts]),
        np.concatenate([p.keypoints for p in parts]),
        np.concatenate([p.visible for p in parts]),
        skipped,
    )


def load_coco_wholebody(
    ann_file: str | os.PathLike,
    image_root: str | os.PathLike,
    detections: str | os.PathLike | None = None,
    sample_interval: int = 1,
    min_box_score: float = 0.0,
) -> Records:
    """People of a COCO-WholeBody-style json (COCO-WholeBody v1.0, a UBody scene, ours).

    Image paths are `image_root / file_name`. With `detections` (a COCO results json of
    person boxes, e.g. COCO_val2017_detections_AP_H_56_person.json) the boxes come from it,
    those scoring below `min_box_score` dropped, instead of from the annotations.
    """
    data = _read_json(ann_file, dict)
    images = data.get("images")
    if not isinstance(images, list):
        raise AnnotationError(f"{ann_file}: no 'images' list: not a COCO-style annotation file")
    image_ids = np.array([img["id"] for img in images], np.int64)
    row_of = {int(i): r for r, i in enumerate(image_ids)}
    if len(row_of) != len(images):
        raise AnnotationError(f"{ann_file}: image ids repeat")
    sizes = np.array([(img["width"], img["height"]) for img in images], np.int64).reshape(-1, 2)
    paths = [str(Path(image_root) / img["file_name"]) for img in images]
    if detections is None:
        columns, skipped = _people(data.get("annotations", []), row_of, sizes, ann_file)
    else:
        columns, skipped = _detected_people(detections, row_of, min_box_score)
    records = Records(paths, image_ids, sizes, *columns, skipped)
    if sample_interval > 1:
        keep = image_ids[records.image_index] % sample_interval == 0
        records = records.select(keep)
        records.skipped["sample_interval"] += int((~keep).sum())
    return records


def load_ubody(
    root: str | os.PathLike,
    split: str = "train",
    scenes: tuple[str, ...] = UBODY_SCENES,
    sample_interval: int = 10,
) -> Records:
    """UBody as DWPose trains on it: `root/annotations/<scene>/<split>_annotations.json`
    (made by mmpose's tools/dataset_converters/ubody_kpts_to_coco.py) over `root/images`,
    every `sample_interval`-th image id of each scene."""
    root = Path(root)
    parts = [
        load_coco_wholebody(
            root / "annotations" / scene / f"{split}_annotations.json",
            root / "images",
            sample_interval=sample_interval,
        )
        for scene in scenes
    ]
    return concat(parts)


def _read_json(path: str | os.PathLike, kind: type) -> dict | list:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: not valid json ({exc})") from exc
    if not isinstance(data, kind):
        raise AnnotationError(f"{path}: expected a json {kind.__name__}, got {type(data).__name__}")
    return data


def _people(
    annotations: list[dict], row_of: dict[int, int], sizes: np.ndarray, source: object
) -> tuple[tuple[np.ndarray, ...], Counter]:
    """Ground-truth people that pass mmpose's filters, as columns."""
    skipped = Counter()
    rows, ids, boxes, points = [], [], [], []
    for ann in annotations:
        if "bbox" not in ann or "keypoints" not in ann:
            skipped["no_box"] += 1
            continue
        image_id = ann["image_id"]
        if image_id not in row_of:
            raise AnnotationError(
                f"{source}: annotation {ann.get('id')} refers to image {image_id}, which is not in 'images'"
            )
        row = row_of[image_id]
        kpts = _whole_body(ann, source)
        width, height = sizes[row]
        x, y, w, h = ann["bbox"]
        box = np.array(
            [np.clip(x, 0, width - 1), np.clip(y, 0, height - 1),
             np.clip(x + w, 0, width - 1), np.clip(y + h, 0, height - 1)], np.float32,
        )  # fmt: skip
        if ann.get("iscrowd", 0):
            skipped["crowd"] += 1
        elif ann.get("num_keypoints", np.count_nonzero(kpts[:17, :2].max(axis=1))) == 0:
            skipped["no_keypoints"] += 1
        elif box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
            skipped["empty_box"] += 1
        elif kpts[:, :2].max() <= 0:
            skipped["no_keypoints"] += 1
        else:
            rows.append(row)
            ids.append(ann["id"])
            boxes.append(box)
            points.append(kpts)
    n = len(rows)
    kpts = np.array(points, np.float32).reshape(n, schema.NUM_KEYPOINTS, 3)
    columns = (
        np.array(rows, np.int64),
        np.array(ids, np.int64),
        np.array(boxes, np.float32).reshape(n, 4),
        np.ones(n, np.float32),
        np.ascontiguousarray(kpts[:, :, :2]),
        (kpts[:, :, 2] > 0).astype(np.float32),
    )
    return columns, skipped


def _whole_body(ann: dict, source: object) -> np.ndarray:
    """The 133 (x, y, v) of one annotation; a missing face, hand or foot field is unlabelled."""
    parts = []
    for name, size in zip(PART_FIELDS, PART_SIZES):
        values = ann.get(name, None if name == "keypoints" else [0.0] * (3 * size))
        if isinstance(values, list) and len(values) == 3 * size and not isinstance(values[0], list):
            parts.extend(values)
            continue
        got = f"{len(values)} entries" if isinstance(values, list) else type(values).__name__
        hint = ""
        if (
            name == "keypoints"
            and isinstance(values, list)
            and values
            and isinstance(values[0], list)
        ):
            hint = (
                " (a list of [x, y] pairs: mmpose's UBody-3D export, whose 'keypoints' are "
                "SMPL-X joints; use the 2D UBody files, annotations/<scene>/train_annotations.json)"
            )
        raise AnnotationError(
            f"{source}: annotation {ann.get('id')}: '{name}' should be {size} (x, y, v) triplets "
            f"flattened ({3 * size} numbers), got {got}{hint}"
        )
    return np.array(parts, np.float64).reshape(schema.NUM_KEYPOINTS, 3)


def _detected_people(
    det_file: str | os.PathLike, row_of: dict[int, int], min_box_score: float
) -> tuple[tuple[np.ndarray, ...], Counter]:
    """Person boxes of a COCO results file, as columns with dummy keypoints."""
    dets = _read_json(det_file, list)
    skipped = Counter()
    rows, boxes, scores = [], [], []
    for det in dets:
        if det.get("category_id") != 1:
            skipped["not_person"] += 1
            continue
        if det["image_id"] not in row_of:
            raise AnnotationError(
                f"{det_file}: a detection is on image {det['image_id']}, which the annotation file does not list"
            )
        if det["score"] < min_box_score:
            skipped["low_score"] += 1
            continue
        rows.append(row_of[det["image_id"]])
        boxes.append(det["bbox"][:4])
        scores.append(det["score"])
    n = len(rows)
    boxes = np.array(boxes, np.float32).reshape(n, 4)
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy in float32, as mmpose
    columns = (
        np.array(rows, np.int64),
        np.arange(n, dtype=np.int64),
        boxes,
        np.array(scores, np.float32),
        np.zeros((n, schema.NUM_KEYPOINTS, 2), np.float32),
        np.ones((n, schema.NUM_KEYPOINTS), np.float32),
    )
    return columns, skipped
