"""PoseFrame and ComfyUI's POSE_KEYPOINT: layout, visibility rules, round trips, errors."""

import json

import numpy as np
import pytest
from conftest import IMAGE_IDS, assert_same_image

from comfyui_dwpose import PoseFrame, from_pose_keypoint, render_pose, schema, to_pose_keypoint
from comfyui_dwpose.pose_keypoint import PoseKeypointError
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


def body(points: dict[int, tuple[float, float]]) -> list[float]:
    """pose_keypoints_2d with the given OpenPose-18 joints visible, the others hidden."""
    flat = [0.0] * 54
    for j, (x, y) in points.items():
        flat[3 * j : 3 * j + 3] = [x, y, 1.0]
    return flat


def entry_with(**person) -> dict:
    return {"canvas_width": 64, "canvas_height": 48, "people": [person]}


BODY = body({0: (30.0, 10.0), 2: (25.0, 20.0), 5: (35.0, 20.0)})


# Issue 12, case 3: each malformed input is one message naming the frame and the field.
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"people": []},
            "canvas_width is missing (a POSE_KEYPOINT frame needs canvas_width, canvas_height and people)",
        ),
        (
            {"canvas_width": "wide", "canvas_height": 1, "people": []},
            "canvas_width: expected a whole number, got str 'wide'",
        ),
        (
            {"canvas_width": 0, "canvas_height": 48, "people": []},
            "canvas_width must be at least 1, got 0",
        ),
        (
            {"canvas_width": 64, "canvas_height": -48, "people": []},
            "canvas_height must be at least 1, got -48",
        ),
        (
            {"canvas_width": 1e9, "canvas_height": 1e9, "people": []},
            "canvas: 1000000000x1000000000 is 1,000,000,000,000,000,000 pixels, beyond the "
            "limit of 900,000,000 (raise $DWPOSE_MAX_IMAGE_PIXELS to allow it)",
        ),
        (
            {"canvas_width": float("nan"), "canvas_height": 48, "people": []},
            "canvas_width: expected a whole number, got float nan",
        ),
        (
            {"canvas_width": 64, "canvas_height": 48, "people": {"0": {}}},
            "people: expected a list, got dict",
        ),
        (
            {"canvas_width": 64, "canvas_height": 48, "people": ["someone"]},
            "people[0]: expected a dict, got str 'someone'",
        ),
        (
            entry_with(box=[1, 2, 3]),
            "people[0].box: expected [x1, y1, x2, y2] or [x1, y1, x2, y2, score], got 3 numbers",
        ),
        (
            entry_with(person_id=1e30),
            "people[0].person_id: expected a whole number, got float 1e+30",
        ),
        (entry_with(person_id="7"), "people[0].person_id: expected a whole number, got str '7'"),
        (
            entry_with(pose_keypoints_2d=[*BODY[:4], {"x": 1}, *BODY[5:]]),
            r"people[0].pose_keypoints_2d[4]: expected a number, got dict",
        ),
        (
            entry_with(pose_keypoints_2d=[*BODY[:4], True, *BODY[5:]]),
            r"people[0].pose_keypoints_2d[4]: expected a number, got bool True",
        ),
        (
            entry_with(pose_keypoints_2d=[1.0, 2.0, 1.0]),
            "people[0].pose_keypoints_2d: has 1 points, expected 18",
        ),
        (
            entry_with(pose_keypoints_2d=BODY[:-1]),
            "people[0].pose_keypoints_2d: 53 numbers is not a list of (x, y, c) triples",
        ),
        (
            entry_with(face_keypoints_2d="none"),
            "people[0].face_keypoints_2d: expected a list of numbers, got str 'none'",
        ),
        (
            entry_with(keypoints_133=[0.0] * 3 * 132),
            "people[0].keypoints_133: has 132 points, expected 133",
        ),
    ],
)
def test_malformed_pose_keypoint_is_refused(entry, message):
    with pytest.raises(PoseKeypointError) as info:
        from_pose_keypoint([entry_with(pose_keypoints_2d=BODY), entry], source="poses.json")
    assert str(info.value) == f"poses.json: frame 1: {message}"


def test_a_frame_that_is_not_a_dict_and_a_value_that_is_not_a_list():
    with pytest.raises(
        PoseKeypointError, match=r"^POSE_KEYPOINT: frame 0: expected a dict, got list$"
    ):
        from_pose_keypoint([[1, 2]])
    with pytest.raises(
        PoseKeypointError,
        match=r"^POSE_KEYPOINT: expected a POSE_KEYPOINT list of frames, got str$",
    ):
        from_pose_keypoint("frames")


def test_unreadable_points_become_unseen():
    """NaN, infinities and absurd coordinates (case 3) are unseen points, not errors; a
    4-value box gets score 1; null parts and people are nobody."""
    flat = body({0: (30.0, 10.0), 2: (25.0, 20.0), 5: (35.0, 20.0), 3: (1e12, 5.0)})
    flat[0] = float("nan")  # nose x
    flat[7] = float("inf")  # right shoulder y
    [frame] = from_pose_keypoint(entry_with(pose_keypoints_2d=flat, box=[1, 2, 30, 40]))
    seen = frame.scores[0] > 0
    assert seen.sum() == 1 and seen[5]  # left shoulder only; nose, r-shoulder, r-elbow unseen
    np.testing.assert_array_equal(frame.keypoints[0, [0, 6, 8]], np.zeros((3, 2)))
    np.testing.assert_array_equal(frame.boxes[0], [1, 2, 30, 40])
    assert frame.box_scores[0] == 1.0
    assert np.isfinite(frame.keypoints).all()
    ours = frame_with({0: 0.9, 5: 0.9})
    record = to_pose_keypoint(ours)[0]["people"][0]
    record["keypoints_133"][0] = float("-inf")
    record["keypoints_133"][2 + 3 * 5] = float("nan")  # a score
    [back] = from_pose_keypoint({"canvas_width": 200, "canvas_height": 100, "people": [record]})
    assert back.scores[0, 0] == 0 and back.scores[0, 5] == 0
    empty = {"canvas_width": 8, "canvas_height": 8, "people": None}
    assert len(from_pose_keypoint(empty)[0]) == 0
    [nulls] = from_pose_keypoint(entry_with(pose_keypoints_2d=None, hand_left_keypoints_2d=None))
    assert len(nulls) == 1 and not nulls.scores.any()


def test_nan_keypoints_are_written_as_valid_json(tmp_path):
    """The library used to write bare NaN (invalid JSON) for NaN keypoints (case 3)."""
    frame = frame_with({0: 0.9, 5: 0.9, 6: 0.9, 100: 0.9})
    frame.keypoints[0, 0] = [np.nan, 3.0]
    frame.keypoints[0, 100] = [np.inf, 3.0]
    frame.scores[0, 6] = np.nan
    frame.boxes[0, 0] = np.nan
    save_json(to_pose_keypoint(frame), tmp_path / "p.json")

    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    value = json.loads((tmp_path / "p.json").read_text(), parse_constant=refuse)
    person = value[0]["people"][0]
    assert person["pose_keypoints_2d"][:3] == [0.0, 0.0, 0.0]  # the nose: unseen
    assert person["keypoints_133"][:3] == [0.0, 0.0, 0.0] and person["box"][0] == 0.0
    [back] = load_json(tmp_path / "p.json")
    assert (
        back.scores[0, 0] == 0 and back.scores[0, 6] == 0 and back.scores[0, 5] == np.float32(0.9)
    )
    with pytest.raises(ValueError, match="NaN or infinite numbers, which JSON cannot store"):
        save_json(
            [{"canvas_width": 1, "canvas_height": 1, "people": [{"box": [np.nan] * 4}]}],
            tmp_path / "q.json",
        )


def test_normalised_points_with_one_off_the_canvas():
    """Case 5: an editor's normalised pose whose ankle is below the frame (y = 1.18) is
    normalised, not pixels; pixel poses stay pixels; the form can be stated."""
    points = {0: (0.5, 0.1), 1: (0.5, 0.2), 2: (0.4, 0.2), 5: (0.6, 0.2), 8: (0.45, 0.6),
              9: (0.45, 0.9), 10: (0.45, 1.18), 11: (0.55, 0.6), 12: (0.55, 0.9), 13: (0.55, 1.1)}  # fmt: skip
    entry = {
        "canvas_width": 200,
        "canvas_height": 100,
        "people": [{"pose_keypoints_2d": body(points)}],
    }
    [frame] = from_pose_keypoint(entry)
    np.testing.assert_allclose(frame.keypoints[0, 16], [90.0, 118.0])  # right ankle (COCO 16)
    np.testing.assert_allclose(frame.keypoints[0, 0], [100.0, 10.0])
    [as_pixels] = from_pose_keypoint(entry, coordinates="pixels")
    np.testing.assert_allclose(as_pixels.keypoints[0, 16], [0.45, 1.18])
    pixels = {0: (100.0, 10.0), 2: (80.0, 20.0), 10: (90.0, 118.0)}
    [frame] = from_pose_keypoint({**entry, "people": [{"pose_keypoints_2d": body(pixels)}]})
    np.testing.assert_allclose(frame.keypoints[0, 16], [90.0, 118.0])
    [forced] = from_pose_keypoint(
        {**entry, "people": [{"pose_keypoints_2d": body({0: (0.5, 0.5)})}]},
        coordinates="normalised",
    )
    np.testing.assert_allclose(forced.keypoints[0, 0], [100.0, 50.0])
    with pytest.raises(ValueError, match="coordinates must be one of"):
        from_pose_keypoint(entry, coordinates="percent")


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
    with pytest.raises(
        ValueError, match=r"number\.json: expected a POSE_KEYPOINT list of frames, got int"
    ):
        load_json(tmp_path / "number.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PoseKeypointError, match=r"deep\.json: nested too deeply$"):
        load_json(tmp_path / "deep.json")
