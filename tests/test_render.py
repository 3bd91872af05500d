"""Drawing options on real poses (COCO-WholeBody ground truth as a PoseFrame)."""

import json

import numpy as np
import pytest
from conftest import assert_same_image

from comfyui_dwpose import PoseFrame, render_pose, schema
from comfyui_dwpose.limits import SizeLimitError
from comfyui_dwpose.render import HAND_EDGE_COLORS, xinsr_stick_width

WIDTH, HEIGHT = 640, 392  # image 197388


@pytest.fixture(scope="module")
def person(coco_images) -> PoseFrame:
    """The fully annotated person of COCO image 197388, every labelled point at score 0.9."""
    data = json.loads(
        (coco_images["000000197388"].with_name("test_coco_wholebody.json")).read_text()
    )
    ann = next(a for a in data["annotations"] if a["image_id"] == 197388 and a["face_valid"])
    parts = ["keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"]
    flat = np.concatenate([np.asarray(ann[p], float).reshape(-1, 3) for p in parts])
    scores = np.where(flat[:, 2] > 0, 0.9, 0.0)
    x, y, w, h = ann["bbox"]
    return PoseFrame(flat[None, :, :2], scores[None], [[x, y, x + w, y + h]], [0.9], WIDTH, HEIGHT)


def colors(image: np.ndarray) -> set[tuple[int, int, int]]:
    return set(map(tuple, np.unique(image.reshape(-1, 3), axis=0).tolist()))


def palette() -> set[tuple[int, int, int]]:
    dimmed = {
        tuple(int(c * 0.6) for c in color) for color in schema.BODY_COLORS + schema.FOOT_COLORS
    }
    return (
        {(0, 0, 0), schema.FACE_POINT_COLOR, schema.HAND_POINT_COLOR}
        | dimmed
        | set(schema.BODY_COLORS)
        | set(schema.FOOT_COLORS)
        | set(HAND_EDGE_COLORS)
    )


def test_hand_edge_colors_are_upstream_hsv_rounding():
    # HSV(e/20, 1, 1)·255 in float64, rounded as OpenCV rounds a float colour (all 20
    # appear in the golden maps; e.g. edge 3 is 229, not 230, since 0.15·6 < 0.9).
    assert HAND_EDGE_COLORS == [
        (255, 0, 0), (255, 77, 0), (255, 153, 0), (255, 229, 0), (204, 255, 0),
        (128, 255, 0), (51, 255, 0), (0, 255, 25), (0, 255, 102), (0, 255, 179),
        (0, 255, 255), (0, 178, 255), (0, 102, 255), (0, 25, 255), (51, 0, 255),
        (128, 0, 255), (204, 0, 255), (255, 0, 230), (255, 0, 153), (255, 0, 77),
    ]  # fmt: skip


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 3.25])
def test_maps_at_any_size_are_crisp_and_scaled(person, scale):
    width, height = round(WIDTH * scale), round(HEIGHT * scale)
    image = render_pose(person, width, height, feet=True)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    # Drawn, not resized: only palette colours, no blended edge pixels.
    assert colors(image) <= palette()
    # The drawing lands where the scaled keypoints are: its extent scales with the map.
    ys, xs = np.nonzero(image.any(axis=-1))
    visible = person.keypoints[0][person.scores[0] > 0] * scale
    assert abs(xs.min() - visible[:, 0].min()) <= 5 and abs(xs.max() - visible[:, 0].max()) <= 5
    assert abs(ys.min() - visible[:, 1].min()) <= 5 and abs(ys.max() - visible[:, 1].max()) <= 5


def test_part_toggles(person):
    full = render_pose(person)
    no_face = render_pose(person, face=False)
    no_hands = render_pose(person, hands=False)
    no_body = render_pose(person, body=False)
    white = schema.FACE_POINT_COLOR
    assert white in colors(full) and white not in colors(no_face)
    assert set(HAND_EDGE_COLORS[1:9]) & colors(full) and not set(HAND_EDGE_COLORS[1:9]) & colors(
        no_hands
    )
    dimmed_limbs = {tuple(int(c * 0.6) for c in color) for color in schema.BODY_COLORS}
    assert dimmed_limbs & colors(full) and not dimmed_limbs & colors(no_body)
    assert not render_pose(person, body=False, hands=False, face=False).any()


def test_feet_drawn_only_on_request(person):
    plain, with_feet = render_pose(person), render_pose(person, feet=True)
    changed = np.nonzero((plain != with_feet).any(axis=-1))
    assert len(changed[0]) > 100
    feet = person.keypoints[0, schema.FEET]
    ankles = person.keypoints[0, [15, 16]]
    near = np.concatenate([feet, ankles])
    ys, xs = changed
    lo, hi = near.min(axis=0) - 10, near.max(axis=0) + 10
    assert (
        (xs >= lo[0]).all() and (xs <= hi[0]).all() and (ys >= lo[1]).all() and (ys <= hi[1]).all()
    )


def test_threshold_rules_follow_upstream(person):
    """Body points need a score above the threshold; face and hand points at least it."""
    at = PoseFrame(
        person.keypoints,
        np.full_like(person.scores, 0.5),
        person.boxes,
        person.box_scores,
        WIDTH,
        HEIGHT,
    )
    image = render_pose(at, threshold=0.5)
    dimmed_limbs = {tuple(int(c * 0.6) for c in color) for color in schema.BODY_COLORS}
    assert not dimmed_limbs & colors(image)  # no body: 0.5 is not above 0.5
    assert schema.FACE_POINT_COLOR in colors(image)  # faces: 0.5 is at least 0.5
    assert set(HAND_EDGE_COLORS) & colors(image)
    assert not render_pose(at, threshold=0.51).any()


def test_points_below_one_pixel_are_not_drawn():
    """Upstream skips face and hand points whose integer pixel is 0 (or negative)."""
    keypoints = np.full((1, 133, 2), 50.0)
    scores = np.zeros((1, 133))
    face = schema.FACE.start
    keypoints[0, face] = [0.9, 50]
    scores[0, face] = 1.0
    frame = PoseFrame(keypoints, scores, np.zeros((1, 4)), [1.0], 100, 100)
    assert not render_pose(frame).any()
    frame.keypoints[0, face] = [1.0, 50]
    assert render_pose(frame)[50, 1].tolist() == [255, 255, 255]


def test_xinsr_stick_width_rule():
    assert xinsr_stick_width(499, 300) == 4
    assert xinsr_stick_width(500, 300) == 8
    assert xinsr_stick_width(1024, 1024) == 12
    assert xinsr_stick_width(2048, 1536) == 16
    assert xinsr_stick_width(9000, 100) == 28  # capped at 7×


def test_wider_sticks_cover_more(person):
    def limb_pixels(image):
        dimmed = {tuple(int(c * 0.6) for c in color) for color in schema.BODY_COLORS}
        return sum(int((image == c).all(axis=-1).sum()) for c in dimmed)

    thin = render_pose(person, 1280, 784, hands=False, face=False)
    xinsr = render_pose(person, 1280, 784, hands=False, face=False, stick_width="xinsr")
    assert limb_pixels(xinsr) > 2 * limb_pixels(thin)
    assert_same_image(
        render_pose(person, 1280, 784, hands=False, face=False, stick_width=12), xinsr
    )


def test_batch_of_frames_stacks(person):
    empty = PoseFrame.empty(WIDTH, HEIGHT)
    maps = render_pose([person, empty])
    assert maps.shape == (2, HEIGHT, WIDTH, 3)
    assert_same_image(maps[0], render_pose(person))
    assert not maps[1].any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0, "height": 10}, "map size must be positive"),
        ({"stick_width": 0}, "stick_width must be a positive number"),
        ({"stick_width": "wide"}, "stick_width must be a positive number"),
    ],
)
def test_bad_options_are_refused(person, kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_pose(person, **kwargs)


def test_unreadable_points_are_drawn_as_unseen(person):
    """Issue 12, case 8: one NaN point crashed render_pose ("cannot convert float NaN to
    integer"); NaN, infinite and absurd points are now unseen, everything else is drawn."""
    broken = PoseFrame(
        person.keypoints.copy(), person.scores.copy(), person.boxes, person.box_scores,
        WIDTH, HEIGHT,
    )  # fmt: skip
    hidden = PoseFrame(
        person.keypoints.copy(), person.scores.copy(), person.boxes, person.box_scores,
        WIDTH, HEIGHT,
    )  # fmt: skip
    for index, value in ((0, np.nan), (9, 1e12), (100, np.inf), (30, -np.inf)):
        broken.keypoints[0, index, 0] = value
        hidden.scores[0, index] = 0.0
    broken.scores[0, 60] = np.nan
    hidden.scores[0, 60] = 0.0
    assert hidden.scores[0, [0, 9, 100, 30, 60]].tolist() == [0.0] * 5
    assert person.scores[0, [0, 9, 100, 30, 60]].min() > 0.3  # all were drawn before
    drawn = render_pose(broken)
    assert_same_image(drawn, render_pose(hidden))
    assert drawn.any()
    assert_same_image(render_pose(broken, 1280, 784), render_pose(hidden, 1280, 784))


def test_an_empty_list_of_frames():
    assert render_pose([], 64, 48).shape == (0, 48, 64, 3)
    with pytest.raises(
        ValueError, match=r"^render_pose got no frames: give at least one, or width and height$"
    ):
        render_pose([])


def test_map_size_limits_apply_before_allocating(person, monkeypatch):
    with pytest.raises(SizeLimitError) as info:
        render_pose(person, 100_000, 100_000)
    assert str(info.value) == (
        "a 100000x100000 pose map is beyond the limit of 32,768 pixels a side and 268,435,456 "
        "pixels in all (about 768 MiB): choose a smaller resolution, or raise "
        "$DWPOSE_MAX_MAP_SIDE / $DWPOSE_MAX_MAP_PIXELS"
    )
    with pytest.raises(SizeLimitError, match="a 1x100000 pose map"):
        render_pose(person, 1, 100_000)
    monkeypatch.setenv("DWPOSE_MAX_MAP_PIXELS", "1000")
    with pytest.raises(SizeLimitError, match="beyond the limit of 32,768 pixels a side and 1,000"):
        render_pose(person, 64, 48)
    monkeypatch.setenv("DWPOSE_MAX_MAP_PIXELS", "1_000_000")
    monkeypatch.setenv("DWPOSE_MAX_MAP_SIDE", "40000")
    assert render_pose(person, 40000, 8).shape == (8, 40000, 3)
    monkeypatch.setenv("DWPOSE_MAX_MAP_SIDE", "lots")
    with pytest.raises(
        SizeLimitError, match=r"\$DWPOSE_MAX_MAP_SIDE must be a whole number, got 'lots'"
    ):
        render_pose(person, 64, 48)
