"""The whole pipeline against upstream's reference outputs (tests/data/golden/README.md).

Boxes, keypoints and scores must equal upstream's to the bit; maps pixel for pixel.
"""

import json

import numpy as np
import pytest
from conftest import IMAGE_IDS, assert_same_image
from PIL import Image

from comfyui_dwpose import DWPose, PoseFrame, render_pose, to_pose_keypoint
from comfyui_dwpose.images import load_image

VARIANTS = ("official_rgb", "official_bgr", "official_nodet", "official_rgb_res512")


def reference(golden, image_id, variant):
    data = np.load(golden / image_id / variant / "keypoints.npz")
    pose_map = np.asarray(Image.open(golden / image_id / variant / "pose.png"))
    return data, pose_map


@pytest.fixture(scope="module")
def estimators(standins):
    det, empty, pose = standins["det"], standins["det_empty"], standins["pose"]
    return {
        "rgb": DWPose(det, pose, detector_channels="rgb"),
        "bgr": DWPose(det, pose),  # the default: BGR to the detector, RGB to the pose model
        "nodet": DWPose(empty, pose, detector_channels="rgb", whole_image_fallback=True),
        "nodet_default": DWPose(empty, pose, detector_channels="rgb"),
    }


@pytest.mark.parametrize("image_id", IMAGE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_render_of_reference_keypoints_equals_reference_map(golden, image_id, variant):
    data, expected = reference(golden, image_id, variant)
    n = len(data["raw_keypoints"])
    h, w = expected.shape[:2]
    frame = PoseFrame(
        data["raw_keypoints"], data["raw_scores"], np.zeros((n, 4)), np.zeros(n), w, h
    )
    assert_same_image(render_pose(frame), expected)


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_rgb_pipeline_equals_upstream(golden, coco_images, estimators, image_id):
    data, expected = reference(golden, image_id, "official_rgb")
    frame = estimators["rgb"](load_image(coco_images[image_id]))
    assert len(frame) == 2
    np.testing.assert_array_equal(frame.boxes, data["det_boxes"])
    np.testing.assert_array_equal(frame.keypoints, data["raw_keypoints"])
    np.testing.assert_array_equal(frame.scores, data["raw_scores"])
    assert_same_image(render_pose(frame), expected)


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_bgr_detector_boxes_equal_upstream(golden, coco_images, estimators, image_id):
    data, _ = reference(golden, image_id, "official_bgr")
    frame = estimators["bgr"](load_image(coco_images[image_id]))
    np.testing.assert_array_equal(frame.boxes, data["det_boxes"])


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_pose_model_fed_bgr_reproduces_upstream_example_script(
    golden, coco_images, estimators, image_id
):
    """Upstream's example script feeds BGR to the pose model too; given its boxes and a
    BGR image, our pose stage gives its keypoints, so the stages are exact either way."""
    data, _ = reference(golden, image_id, "official_bgr")
    bgr = np.ascontiguousarray(load_image(coco_images[image_id])[:, :, ::-1])
    [(keypoints, scores)] = estimators["bgr"].pose([bgr], [data["det_boxes"]])
    np.testing.assert_array_equal(keypoints, data["raw_keypoints"])
    np.testing.assert_array_equal(scores, data["raw_scores"])


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_whole_image_fallback_equals_upstream_no_detection(
    golden, coco_images, estimators, image_id
):
    data, expected = reference(golden, image_id, "official_nodet")
    image = load_image(coco_images[image_id])
    frame = estimators["nodet"](image)
    np.testing.assert_array_equal(frame.boxes, [[0, 0, image.shape[1], image.shape[0]]])
    np.testing.assert_array_equal(frame.keypoints, data["raw_keypoints"])
    np.testing.assert_array_equal(frame.scores, data["raw_scores"])
    assert_same_image(render_pose(frame), expected)
    # Off by default (as in ComfyUI): nobody found means no people and a black map.
    nobody = estimators["nodet_default"](image)
    assert len(nobody) == 0 and not render_pose(nobody).any()


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_controlnet_app_resize_variant(golden, coco_images, estimators, image_id):
    """The ControlNet app first resizes (short side 512, multiples of 64); on that image
    our pipeline gives its boxes and keypoints too."""
    data, expected = reference(golden, image_id, "official_rgb_res512")
    image = load_image(coco_images[image_id])
    h, w = expected.shape[:2]
    k = 512 / min(image.shape[:2])
    assert (h, w) == tuple(int(np.round(s * k / 64.0)) * 64 for s in image.shape[:2])
    import cv2

    resized = cv2.resize(
        image, (w, h), interpolation=cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA
    )
    frame = estimators["rgb"](resized)
    np.testing.assert_array_equal(frame.boxes, data["det_boxes"])
    np.testing.assert_array_equal(frame.keypoints, data["raw_keypoints"])
    assert_same_image(render_pose(frame), expected)


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_pose_keypoint_equals_comfyui_layout(golden, coco_images, estimators, image_id):
    """Our POSE_KEYPOINT carries comfyui_controlnet_aux's four OpenPose parts unchanged
    (same numbers, c = 1.0 or [0, 0, 0], null parts), plus our extra keys."""
    expected = json.loads((golden / image_id / "comfy_ort" / "pose_keypoint.json").read_text())
    frame = estimators["rgb"](load_image(coco_images[image_id]))
    got = json.loads(json.dumps(to_pose_keypoint(frame)))
    assert len(got) == len(expected) == 1
    assert {k: got[0][k] for k in ("canvas_width", "canvas_height")} == {
        k: expected[0][k] for k in ("canvas_width", "canvas_height")
    }
    assert len(got[0]["people"]) == len(expected[0]["people"])
    for ours, theirs in zip(got[0]["people"], expected[0]["people"]):
        assert {k: ours[k] for k in theirs} == theirs
        assert set(ours) - set(theirs) == {"foot_keypoints_2d", "keypoints_133", "box"}


# Map sizes at resolution 512, per image: comfyui_controlnet_aux's node draws the short side
# at 512 and the long side in proportion (its comfy_ort/pose.png); the ControlNet app rounds
# both sides to multiples of 64 (official_rgb_res512); diffusers needs multiples of 8.
SIZES_512 = {  # image: (node and CLI, DWPosePreprocessor)
    "000000000785": ((771, 512), (768, 512)),  # 640x425
    "000000040083": ((769, 512), (768, 512)),  # 500x333
    "000000196141": ((764, 512), (760, 512)),  # 640x429: the app's 64-rule gives 768
    "000000197388": ((836, 512), (832, 512)),  # 640x392
}


@pytest.mark.parametrize("image_id", IMAGE_IDS)
def test_map_sizes_at_resolution_512(golden, coco_images, standins, tmp_path, image_id):
    """The CLI (and the node: tests/test_nodes.py) match comfyui_controlnet_aux's node;
    the preprocessor's sides are multiples of 8, which diffusers pipelines need."""
    from comfyui_dwpose import DWPosePreprocessor, cli

    ours, diffusers = SIZES_512[image_id]
    assert Image.open(golden / image_id / "comfy_ort" / "pose.png").size == ours
    models = ["--detector", str(standins["det"]), "--pose-model", str(standins["pose"])]
    image = coco_images[image_id]
    assert cli.main(["pose", str(image), "-o", str(tmp_path), "--resolution", "512", *models]) == 0
    assert Image.open(tmp_path / f"{image_id}.png").size == ours
    pre = DWPosePreprocessor(standins["det"], standins["pose"])
    assert pre(Image.open(image), image_resolution=512).size == diffusers
