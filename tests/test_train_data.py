"""COCO-WholeBody / UBody records and the top-down dataset (comfyui_dwpose.train) on tests/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from comfyui_dwpose.images import ImageError
from comfyui_dwpose.train import (
    AUGMENT_PRESETS,
    TopDownDataset,
    collate,
    concat,
    load_coco_wholebody,
    load_ubody,
    make_loader,
)
from comfyui_dwpose.train.annotations import AnnotationError
from comfyui_dwpose.train.augment import (
    box_center_scale,
    fix_aspect_ratio,
    transform_points,
    warp_matrix,
)

DATA = Path(__file__).parent / "data"
COCO = DATA / "coco"
ANN = COCO / "test_coco_wholebody.json"
DETS = COCO / "test_coco_det_AP_H_56.json"
UBODY3D = DATA / "ubody" / "ubody3d_train.json"
PARTS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


def _triplets(ann: dict) -> np.ndarray:
    """The 133 (x, y, v) of an annotation, straight from its five json fields."""
    return np.concatenate([np.array(ann[p], np.float64) for p in PARTS]).reshape(133, 3)


def _json_people():
    """The annotations as the file has them, keyed by id."""
    data = json.loads(ANN.read_text())
    return {a["id"]: a for a in data["annotations"]}, {i["id"]: i for i in data["images"]}


def test_coco_wholebody_ground_truth_equals_the_json():
    records = load_coco_wholebody(ANN, COCO)
    anns, images = _json_people()
    # 14 annotations; 2 have num_keypoints == 0 (ids 1202706 and 508900): mmpose drops them.
    assert len(anns) == 14 and len(records) == 12
    assert set(anns) - set(records.ids.tolist()) == {1202706, 508900}
    assert dict(records.skipped) == {"no_keypoints": 2}
    for i, ann_id in enumerate(records.ids.tolist()):
        ann = anns[ann_id]
        image = images[ann["image_id"]]
        row = records.image_index[i]
        assert records.image_ids[row] == ann["image_id"]
        assert records.image_paths[row] == str(COCO / image["file_name"])
        assert records.image_sizes[row].tolist() == [image["width"], image["height"]]
        x, y, w, h = ann["bbox"]
        clip = lambda v, hi: min(max(v, 0), hi)  # noqa: E731
        expected = [
            clip(x, image["width"] - 1),
            clip(y, image["height"] - 1),
            clip(x + w, image["width"] - 1),
            clip(y + h, image["height"] - 1),
        ]
        np.testing.assert_array_equal(records.boxes[i], np.float32(expected))
        flat = _triplets(ann)
        np.testing.assert_array_equal(records.keypoints[i], flat[:, :2].astype(np.float32))
        np.testing.assert_array_equal(records.visible[i], (flat[:, 2] > 0).astype(np.float32))
    assert (records.box_scores == 1.0).all()
    # 543117's box starts at x = 0.5 and stays; 1724673 has v = 2 body points and 0 elsewhere.
    assert records.visible.sum() == sum((_triplets(anns[i])[:, 2] > 0).sum() for i in records.ids)


def test_filters_follow_mmpose(tmp_path):
    data = json.loads(ANN.read_text())
    a = data["annotations"]
    a[0]["iscrowd"] = 1
    a[1]["bbox"] = [700.0, 10.0, 50.0, 50.0]  # right of the 640-px image: clipped to nothing
    for part in PARTS:  # every coordinate 0 although num_keypoints says 15
        a[2][part] = [0.0] * len(a[2][part])
    del a[4]["bbox"]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    records = load_coco_wholebody(path, COCO)
    assert len(records) == 8
    assert dict(records.skipped) == {"crowd": 1, "empty_box": 1, "no_keypoints": 3, "no_box": 1}


def test_detected_boxes():
    records = load_coco_wholebody(ANN, COCO, detections=DETS)
    dets = json.loads(DETS.read_text())
    assert len(records) == len(dets) == 118
    xywh = np.array([d["bbox"] for d in dets], np.float32)
    np.testing.assert_array_equal(records.boxes, np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
    np.testing.assert_array_equal(records.box_scores, np.float32([d["score"] for d in dets]))
    assert records.image_ids[records.image_index].tolist() == [d["image_id"] for d in dets]
    assert records.ids.tolist() == list(range(118))
    assert (records.keypoints == 0).all() and (records.visible == 1).all()
    strong = load_coco_wholebody(ANN, COCO, detections=DETS, min_box_score=0.5)
    assert len(strong) == sum(d["score"] >= 0.5 for d in dets)
    assert strong.skipped["low_score"] == 118 - len(strong)


def test_sample_interval_keeps_image_ids_divisible():
    records = load_coco_wholebody(ANN, COCO, sample_interval=5)
    # Image ids 785, 40083, 196141, 197388: only 785 is a multiple of 5 (1 person).
    assert records.ids.tolist() == [442619]
    assert records.skipped["sample_interval"] == 11


def _ubody_root(tmp_path: Path) -> Path:
    """A UBody tree with one scene whose 2D annotation is the test file's person.

    The test file is mmpose's UBody-3D export: its 'keypoints' were replaced by SMPL-X joints,
    so the body is written here as unlabelled; feet, face and hands are the file's own 2D
    annotations. Its image is not included."""
    data = json.loads(UBODY3D.read_text())
    ann = data["annotations"][0]
    ann["keypoints"] = [0.0] * 51
    scene = tmp_path / "annotations" / "Magic_show"
    scene.mkdir(parents=True)
    (scene / "train_annotations.json").write_text(json.dumps(data))
    return tmp_path


def test_ubody_scene(tmp_path):
    root = _ubody_root(tmp_path)
    ann = json.loads(UBODY3D.read_text())["annotations"][0]
    records = load_ubody(root, scenes=("Magic_show",), sample_interval=1)
    assert len(records) == 1
    assert records.image_paths[0] == str(
        root / "images" / "Magic_show/Magic_show_S1_Trim1/Magic_show_S1_Trim1/000016.png"
    )
    x, y, w, h = ann["bbox"]
    np.testing.assert_array_equal(records.boxes[0], np.float32([x, y, x + w, y + h]))
    for part, start, size in (
        ("foot_kpts", 17, 6),
        ("face_kpts", 23, 68),
        ("lefthand_kpts", 91, 21),
        ("righthand_kpts", 112, 21),
    ):
        triplets = np.array(ann[part]).reshape(size, 3)
        np.testing.assert_array_equal(
            records.keypoints[0, start : start + size], triplets[:, :2].astype(np.float32)
        )
        np.testing.assert_array_equal(
            records.visible[0, start : start + size], (triplets[:, 2] > 0).astype(np.float32)
        )
    # No body (written unlabelled), no feet (v = 0 in the file), 66 face points, both hands.
    assert records.visible[0, :23].sum() == 0 and records.visible[0].sum() == 66 + 21 + 21
    # DWPose reads every 10th image id of each scene: id 15 is not one.
    assert len(load_ubody(root, scenes=("Magic_show",))) == 0
    with pytest.raises(AnnotationError, match=r"Speech/train_annotations\.json: no such file"):
        load_ubody(root, scenes=("Magic_show", "Speech"), sample_interval=1)


def test_ubody3d_export_is_refused_with_the_reason():
    with pytest.raises(
        AnnotationError,
        match=r"'keypoints' should be 17 \(x, y, v\) triplets.*got 133 entries.*SMPL-X",
    ):
        load_coco_wholebody(UBODY3D, DATA / "ubody")


def test_missing_images_are_reported_or_skipped(tmp_path):
    root = _ubody_root(tmp_path)
    both = concat(
        [
            load_coco_wholebody(ANN, COCO),
            load_ubody(root, scenes=("Magic_show",), sample_interval=1),
        ]
    )
    assert len(both) == 13
    with pytest.raises(
        FileNotFoundError, match=r"1 image\(s\) .*000016.png.*skip_missing_images=True"
    ):
        TopDownDataset(both, (256, 192))
    dataset = TopDownDataset(both, (256, 192), skip_missing_images=True)
    assert len(dataset) == 12 and dataset.records.skipped["missing_image"] == 1


def test_bad_files_are_explained(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AnnotationError, match=r"bad\.json: not valid json"):
        load_coco_wholebody(bad, COCO)
    with pytest.raises(AnnotationError, match=r"nope\.json: no such file"):
        load_coco_wholebody(tmp_path / "nope.json", COCO)
    bad.write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    )
    with pytest.raises(AnnotationError, match="image 1, which the annotation file does not list"):
        load_coco_wholebody(ANN, COCO, detections=bad)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg", "000000196141.jpg"):
        shutil.copy(COCO / name, images / name)
    (images / "000000197388.jpg").write_bytes(b"\xff\xd8 truncated")
    dataset = TopDownDataset(load_coco_wholebody(ANN, images), (64, 48))
    with pytest.raises(ImageError, match=r"000000197388\.jpg: not an image OpenCV can decode"):
        dataset[len(dataset) - 1]


def test_evaluation_sample_is_the_plain_crop():
    records = load_coco_wholebody(ANN, COCO)
    dataset = TopDownDataset(records, (256, 192))
    sample = dataset[0]
    assert sample["image"].shape == (3, 256, 192) and sample["image"].dtype == torch.uint8
    assert sample["keypoints"].shape == (133, 2) and sample["keypoints"].dtype == torch.float32
    assert sample["visible"].dtype == torch.float32
    meta = sample["meta"]
    center, scale = box_center_scale(records.boxes[0])
    scale = fix_aspect_ratio(scale, 0.75)
    matrix = warp_matrix(center, scale, 0.0, (192, 256))
    np.testing.assert_array_equal(meta["matrix"], matrix)
    np.testing.assert_array_equal(meta["center"], center)
    np.testing.assert_array_equal(meta["scale"], scale)
    assert (meta["image_id"], meta["id"], meta["flip"], meta["rotation"], meta["box_score"]) == (
        785,
        442619,
        False,
        0.0,
        1.0,
    )
    rgb = cv2.cvtColor(cv2.imread(str(COCO / "000000000785.jpg")), cv2.COLOR_BGR2RGB)
    expected = cv2.warpAffine(rgb, matrix, (192, 256), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), expected)
    np.testing.assert_allclose(
        sample["keypoints"].numpy(), transform_points(records.keypoints[0], matrix), atol=1e-4
    )
    np.testing.assert_array_equal(sample["visible"].numpy(), records.visible[0])
    # The matrix maps crop predictions back to image pixels.
    back = transform_points(sample["keypoints"].numpy(), cv2.invertAffineTransform(meta["matrix"]))
    np.testing.assert_allclose(back, records.keypoints[0], atol=1e-3)


def _train_set(**kwargs):
    main, final = AUGMENT_PRESETS["coco-wholebody"]
    return TopDownDataset(load_coco_wholebody(ANN, COCO), (64, 48), main, final, seed=3, **kwargs)


def test_augmented_samples_depend_on_seed_epoch_and_index_only():
    dataset = _train_set()
    first = [dataset[i] for i in range(len(dataset))]
    again = [dataset[i] for i in reversed(range(len(dataset)))][::-1]
    for a, b in zip(first, again):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["keypoints"], b["keypoints"])
    dataset.set_epoch(1)
    other = dataset[0]
    assert not torch.equal(other["image"], first[0]["image"])
    assert sum(s["meta"]["flip"] for s in first) not in (0, len(first))


def test_final_pipeline_switch():
    dataset = _train_set(final_from_epoch=2)
    dataset.set_epoch(1)
    assert dataset.current_augment() is AUGMENT_PRESETS["coco-wholebody"][0]
    dataset.set_epoch(2)
    assert dataset.current_augment() is AUGMENT_PRESETS["coco-wholebody"][1]


def test_loader_with_workers_gives_the_same_batches():
    dataset = _train_set()
    dataset.set_epoch(4)
    in_process = list(make_loader(dataset, batch_size=5, num_workers=0))
    with_workers = list(make_loader(dataset, batch_size=5, num_workers=2))
    assert [b["image"].shape for b in in_process] == [
        (5, 3, 64, 48),
        (5, 3, 64, 48),
        (2, 3, 64, 48),
    ]
    for a, b in zip(in_process, with_workers):
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["keypoints"], b["keypoints"]) and torch.equal(
            a["visible"], b["visible"]
        )
        assert a["meta"].keys() == b["meta"].keys()
        for key in a["meta"]:
            assert torch.equal(a["meta"][key], b["meta"][key]), key
    meta = in_process[0]["meta"]
    assert meta["matrix"].shape == (5, 2, 3) and meta["box"].shape == (5, 4)
    assert meta["flip"].dtype == torch.bool and meta["image_id"].dtype == torch.int64
    assert meta["index"].tolist() == [0, 1, 2, 3, 4]


def test_collate_stacks():
    dataset = _train_set()
    batch = collate([dataset[2], dataset[0]])
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (2, 3, 64, 48)
    assert batch["keypoints"].shape == (2, 133, 2) and batch["visible"].shape == (2, 133)
    assert batch["meta"]["index"].tolist() == [2, 0]
