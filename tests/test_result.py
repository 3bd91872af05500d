"""PoseFrame and ComfyUI's POSE_KEYPOINT: layout, visibility rules, round trips, errors."""

import json

import numpy as np
import pytest
from conftest import IMAGE_IDS, assert_same_image

from comfyui_dwpose import PoseFrame, from_pose_keypoint, render_pose, schema, to_pose_keypoint
from comfyui_dwpose.result import load_json, openpose18, save_json


def frame_with(
    scores: dict[int, float], n: int = 1, width: int = 200, height: int = 100
) -> PoseFrame:
    """People whose keypoint k sits at (10 + k, 20 + k / 2) with the given scores (others 0)."""
    k = np.arange(133)
    keypoints = np.stack([10.0 + k, 20.0 + k / 2], axis=1)
    sc = np.zeros(133)
    for index, value in scores.items():
        sc[index] = value
    boxes = np.tile([[5.0, 6.0, 150.0, 90.0]], (n, 1))
    return PoseFrame(
        np.tile(keypoints, (n, 1, 1)), np.tile(sc, (n, 1)), boxes, np.full(n, 0.8), width, height
    )


def triples(values):
    return np.asarray(values).reshape(-1, 3)


def test_pose_frame_types_and_shapes():
    frame = frame_with({0: 0.5}, n=2)
    assert len(frame) == 2
    assert frame.keypoints.shape == (2, 133, 2) and frame.keypoints.dtype == np.float64
    assert frame.scores.dtype == np.float32 and frame.boxes.dtype == np.float64
    empty = PoseFrame.empty(64, 48)
    assert len(empty) == 0 and empty.keypoints.shape == (0, 133, 2)
    assert to_pose_keypoint(empty) == [{"people": [], "canvas_width": 64, "canvas_height": 48}]


def test_select_and_largest():
    frame = frame_with({}, n=3)
    frame.boxes[:] = [[0, 0, 10, 10], [0, 0, 30, 30], [0, 0, 20, 20]]
    frame.track_ids = np.array([7, 8, 9])
    top = frame.largest(2)
    assert top.track_ids.tolist() == [8, 9]
    assert frame.select(np.array([False, True, False])).boxes.tolist() == [[0, 0, 30, 30]]


def test_openpose18_order_and_neck():
    frame = frame_with({5: 0.9, 6: 0.8, 0: 0.31, 2: 0.29})
    body, visible = openpose18(frame.keypoints, frame.scores, 0.3)
    kp = frame.keypoints[0]
    assert body.shape == (1, 18, 2)
    np.testing.assert_array_equal(body[0, 2], kp[6])  # r-shoulder is COCO 6
    np.testing.assert_array_equal(body[0, 14], kp[2])  # r-eye is COCO 2
    np.testing.assert_array_equal(body[0, 1], (kp[5] + kp[6]) / 2)  # neck
    assert visible[0].tolist() == [True, True, True] + [False] * 2 + [True] + [False] * 12
    _, visible = openpose18(frame.keypoints, np.where(np.arange(133) == 6, 0.2, frame.scores), 0.3)
    assert not visible[0, 1]  # one shoulder hidden: no neck


def test_pose_keypoint_layout():
    scores = {5: 0.9, 6: 0.9, 2: 0.9, 1: 0.9}
    scores.update({i: 0.3 for i in range(schema.FACE.start, schema.FACE.start + 5)})
    scores.update({schema.LEFT_HAND.start: 0.95})
    value = to_pose_keypoint(frame_with(scores))
    assert isinstance(value, list) and len(value) == 1
    [person] = value[0]["people"]
    body = triples(person["pose_keypoints_2d"])
    assert body.shape == (18, 3)
    assert body[1].tolist() == [(15 + 16) / 2, (22.5 + 23) / 2, 1.0]  # neck from the shoulders
    assert body[0].tolist() == [0.0, 0.0, 0.0]  # hidden is exactly [0, 0, 0]
    face = triples(person["face_keypoints_2d"])
    assert face.shape == (70, 3)  # 68 + the body's eyes, as OpenPose
    assert face[:5, 2].tolist() == [1.0] * 5 and not face[5:68].any()
    assert face[68].tolist() == body[14].tolist() and face[69].tolist() == body[15].tolist()
    assert triples(person["hand_left_keypoints_2d"])[0].tolist() == [101.0, 65.5, 1.0]
    assert person["hand_right_keypoints_2d"] is None  # a part with no visible point is null
    assert person["foot_keypoints_2d"] is None
    assert set(np.unique(body[:, 2])) <= {0.0, 1.0}


def test_body_is_a_list_even_when_nothing_is_visible():
    """comfyui_controlnet_aux's renderer indexes the body list, so it is never null."""
    [person] = to_pose_keypoint(frame_with({}))[0]["people"]
    assert person["pose_keypoints_2d"] == [0.0] * 54
    assert person["face_keypoints_2d"] is None


def test_round_trip_is_exact():
    rng = np.random.default_rng(0)
    frame = PoseFrame(
        rng.uniform(-20, 700, (3, 133, 2)), rng.uniform(-0.5, 1.2, (3, 133)).astype(np.float32),
        rng.uniform(0, 600, (3, 4)), rng.uniform(0, 1, 3), 640, 480, track_ids=[4, 0, 11],
    )  # fmt: skip
    [back] = from_pose_keypoint(json.loads(json.dumps(to_pose_keypoint(frame))))
    np.testing.assert_array_equal(back.keypoints, frame.keypoints)
    np.testing.assert_array_equal(back.scores, frame.scores)
    np.testing.assert_array_equal(back.boxes, frame.boxes)
    np.testing.assert_array_equal(back.box_scores, frame.box_scores)
    assert back.track_ids.tolist() == [4, 0, 11]
    assert (back.width, back.height) == (640, 480)


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_comfyui_json_renders_like_our_frame(golden, image_id):
    """comfyui_controlnet_aux's POSE_KEYPOINT (no extra keys) re-renders to the map our
    own frame gives: the parts carry everything drawing needs."""
    data = np.load(golden / image_id / "official_rgb" / "keypoints.npz")
    theirs = json.loads((golden / image_id / "comfy_ort" / "pose_keypoint.json").read_text())
    [frame] = from_pose_keypoint(theirs)
    h, w = theirs[0]["canvas_height"], theirs[0]["canvas_width"]
    n = len(data["raw_keypoints"])
    ours = PoseFrame(data["raw_keypoints"], data["raw_scores"], np.zeros((n, 4)), np.zeros(n), w, h)
    assert_same_image(render_pose(frame), render_pose(ours))


def test_normalised_coordinates_from_other_tools():
    entry = {
        "canvas_width": 200,
        "canvas_height": 100,
        "people": [
            {"pose_keypoints_2d": [0.5, 0.5, 1.0] + [0.0, 0.0, 0.0] * 16 + [0.25, 0.1, 1.0]}
        ],
    }
    [frame] = from_pose_keypoint(entry)
    np.testing.assert_array_equal(frame.keypoints[0, 0], [100.0, 50.0])  # nose
    np.testing.assert_array_equal(frame.keypoints[0, 3], [50.0, 10.0])  # l-ear (OpenPose 17)
    assert frame.scores[0, 0] == 1.0 and frame.scores[0, 1] == 0.0
    np.testing.assert_array_equal(frame.boxes[0], [50.0, 10.0, 100.0, 50.0])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"people": []}, "not a POSE_KEYPOINT frame"),
        ({"canvas_width": "wide", "canvas_height": 1, "people": []}, "not a POSE_KEYPOINT frame"),
        (
            {
                "canvas_width": 8,
                "canvas_height": 8,
                "people": [{"pose_keypoints_2d": [1.0, 2.0, 1.0]}],
            },
            "pose_keypoints_2d has 1 points, expected 18",
        ),
    ],
)
def test_malformed_pose_keypoint_is_refused(entry, message):
    with pytest.raises(ValueError, match=message):
        from_pose_keypoint(entry)


def test_json_files(tmp_path):
    frame = frame_with({5: 0.9, 6: 0.9})
    path = tmp_path / "pose.json"
    path.write_text("stale")
    save_json(to_pose_keypoint([frame, frame]), path)
    assert [p.name for p in tmp_path.iterdir()] == ["pose.json"]  # no temporary left behind
    frames = load_json(path)
    assert len(frames) == 2 and np.array_equal(frames[1].keypoints, frame.keypoints)
    (tmp_path / "bad.json").write_text('{"people": [')
    with pytest.raises(ValueError, match=r"cannot read POSE_KEYPOINT JSON from .*bad\.json"):
        load_json(tmp_path / "bad.json")
    (tmp_path / "number.json").write_text("3")
    with pytest.raises(ValueError, match="expected a POSE_KEYPOINT list of frames, got int"):
        load_json(tmp_path / "number.json")
