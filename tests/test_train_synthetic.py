"""The synthetic whole-body set (comfyui_dwpose.train.synthetic): deterministic, COCO-WholeBody
json that the dataset code reads back, and keypoints that the pixels show."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from comfyui_dwpose import schema
from comfyui_dwpose.train import TopDownDataset, load_coco_wholebody, synthetic
from comfyui_dwpose.train.annotations import PART_FIELDS


def test_same_seed_same_bytes(tmp_path):
    a = synthetic.write_split(tmp_path / "a", "train", 6, seed=4, size=(96, 80), progress=False)
    b = synthetic.write_split(tmp_path / "b", "train", 6, seed=4, size=(96, 80), progress=False)
    c = synthetic.write_split(tmp_path / "c", "train", 6, seed=5, size=(96, 80), progress=False)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    for i in range(6):
        name = f"images/train/{i:06d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not list((tmp_path / "a" / "annotations").glob("*.tmp"))


def test_a_failed_rewrite_leaves_no_json(tmp_path):
    """A json vouches for a complete split: rewriting one that fails half-way removes it."""
    synthetic.write_split(tmp_path, "val", 2, seed=0, progress=False)
    blocker = tmp_path / "images" / "val" / "000001.png"
    blocker.unlink()
    blocker.mkdir()  # the second image cannot be written
    with pytest.raises(OSError, match=r"could not write .*000001\.png"):
        synthetic.write_split(tmp_path, "val", 2, seed=1, progress=False)
    assert not (tmp_path / "annotations" / "val.json").exists()


def test_json_reads_back_through_the_dataset(tmp_path):
    path = synthetic.write_split(tmp_path, "val", 12, seed=1, progress=False)
    data = json.loads(path.read_text())
    assert [img["id"] for img in data["images"]] == list(range(12))
    assert all((img["width"], img["height"]) == (128, 128) for img in data["images"])
    anns = data["annotations"]
    assert len(anns) >= 12 and len({a["id"] for a in anns}) == len(anns)
    for ann in anns:
        assert [len(ann[f]) for f in PART_FIELDS] == [51, 18, 204, 63, 63]
        v = np.concatenate([ann[f] for f in PART_FIELDS])[2::3]
        assert ann["num_keypoints"] == int((v[:17] > 0).sum())
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128 and ann["area"] <= w * h
    records = load_coco_wholebody(path, tmp_path / "images" / "val")
    kept = [a for a in anns if a["num_keypoints"] > 0]
    assert records.ids.tolist() == [a["id"] for a in kept]
    first = np.concatenate([kept[0][f] for f in PART_FIELDS]).astype(np.float32).reshape(133, 3)
    np.testing.assert_array_equal(records.keypoints[0], first[:, :2])
    sample = TopDownDataset(records, (128, 96))[0]
    assert sample["image"].shape == (3, 128, 96)


@pytest.mark.parametrize("seed", range(6))
def test_keypoints_sit_on_the_drawing(seed):
    """Visible points lie on their own person's pixels, drawn over the background; hidden
    ones on someone else's; points outside the image are 0 with visibility 0."""
    size = (128, 128)
    image, owner, people = synthetic.render_image(np.random.default_rng([seed, 0, 0]), size)
    background = synthetic._background(np.random.default_rng([seed, 0, 0]), *size)
    for person, (k, v) in enumerate(people, start=1):
        assert set(np.unique(v)) <= {0, 1, 2}
        assert (k[v == 0] == 0).all()
        seen = np.round(k[v == 2]).astype(int)
        assert (owner[seen[:, 1], seen[:, 0]] == person).all()
        changed = (
            np.abs(
                image[seen[:, 1], seen[:, 0]].astype(int) - background[seen[:, 1], seen[:, 0]]
            ).max(axis=1)
            > 30
        )
        assert changed.mean() > 0.85
        hidden = np.round(k[v == 1]).astype(int)
        assert (owner[hidden[:, 1], hidden[:, 0]] != person).all()


def test_figures_are_whole_bodies():
    """Parts hang together: face inside the head, hands at the wrists, feet at the ankles,
    left side drawn on the figure's left."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        k, extras = synthetic.random_pose(rng)
        head = np.hypot(*((k[schema.FACE] - extras["head_center"]) / extras["head"]).T)
        assert head.max() < 1.1
        assert np.allclose(k[schema.LEFT_HAND][0], k[9]) and np.allclose(
            k[schema.RIGHT_HAND][0], k[10]
        )
        hands = (
            np.hypot(*(k[schema.LEFT_HAND] - k[9]).T).max(),
            np.hypot(*(k[schema.RIGHT_HAND] - k[10]).T).max(),
        )
        assert min(hands) > 0.03 and max(hands) < 0.12
        assert (
            np.hypot(*(k[17:20] - k[15]).T).max() < 0.1
            and np.hypot(*(k[20:23] - k[16]).T).max() < 0.1
        )
        assert k[11, 0] > k[12, 0]  # left hip on the image's right: the figure faces us


def test_command_line(tmp_path, capsys):
    out = tmp_path / "set"
    assert (
        synthetic.main(
            [
                str(out),
                "--train",
                "3",
                "--val",
                "2",
                "--size",
                "64x48",
                "--preview",
                str(tmp_path / "p.png"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "train.json: 3 images" in printed and "val.json: 2 images" in printed
    assert cv2.imread(str(out / "images" / "val" / "000001.png")).shape == (64, 48, 3)
    assert cv2.imread(str(tmp_path / "p.png")) is not None
    with pytest.raises(SystemExit):
        synthetic.main([str(out), "--size", "big"])
