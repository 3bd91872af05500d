"""DWPose options and batching, on the golden stand-in detector and an official RTMPose-t."""

import shutil

import cv2
import numpy as np
import pytest
from conftest import add_to_hf_cache

from comfyui_dwpose import DWPose, PoseFrame
from comfyui_dwpose.images import load_image


@pytest.fixture(scope="module")
def images(coco_images) -> list[np.ndarray]:
    return [load_image(coco_images[i]) for i in ("000000000785", "000000040083", "000000197388")]


@pytest.fixture(scope="module")
def estimator(standins, tiny_models) -> DWPose:
    return DWPose(standins["det"], tiny_models["pose"])


def assert_same_frame(got: PoseFrame, expected: PoseFrame) -> None:
    assert (got.width, got.height) == (expected.width, expected.height)
    np.testing.assert_array_equal(got.boxes, expected.boxes)
    np.testing.assert_array_equal(got.box_scores, expected.box_scores)
    np.testing.assert_array_equal(got.keypoints, expected.keypoints)
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_single_image_gives_a_frame(estimator, images):
    frame = estimator(images[0])
    assert isinstance(frame, PoseFrame) and len(frame) == 2
    assert frame.keypoints.shape == (2, 133, 2) and frame.scores.shape == (2, 133)
    assert (frame.width, frame.height) == (640, 425)


def test_batch_equals_one_by_one(estimator, images):
    """People of all frames share pose-model batches; results are the same as alone."""
    frames = estimator([images[0], images[1], images[2], images[0]])
    assert len(frames) == 4
    for frame, image in zip(frames, [*images, images[0]]):
        assert_same_frame(frame, estimator(image))


def test_small_pose_batches_change_nothing(standins, tiny_models, images):
    reference = DWPose(standins["det"], tiny_models["pose"])(images)
    chunked = DWPose(standins["det"], tiny_models["pose"], batch_size=3)(images)
    for got, expected in zip(chunked, reference):
        assert_same_frame(got, expected)


def test_stacked_frames_array(estimator, images):
    video = np.stack([images[0]] * 3)
    frames = estimator(video)
    assert isinstance(frames, list) and len(frames) == 3
    assert_same_frame(frames[2], estimator(images[0]))
    assert estimator([]) == []


def test_max_people_keeps_the_largest(standins, tiny_models, images):
    every = DWPose(standins["det"], tiny_models["pose"])(images[0])
    one = DWPose(standins["det"], tiny_models["pose"], max_people=1)(images[0])
    areas = (every.boxes[:, 2] - every.boxes[:, 0]) * (every.boxes[:, 3] - every.boxes[:, 1])
    assert len(one) == 1
    assert_same_frame(one, every.select([int(np.argmax(areas))]))


def test_without_detector_the_whole_image_is_one_person(standins, tiny_models, images):
    frame = DWPose(None, tiny_models["pose"])(images[1])
    assert len(frame) == 1
    np.testing.assert_array_equal(frame.boxes, [[0, 0, 500, 333]])
    assert frame.box_scores.tolist() == [0.0]
    same = DWPose(standins["det"], tiny_models["pose"], use_detector=False)(images[1])
    assert_same_frame(same, frame)


def test_huge_images_are_shrunk_and_mapped_back(estimator, standins, tiny_models, images):
    """Above max_side the work happens on an area-averaged copy; results come back in
    the caller's pixels, equal to running on that copy and scaling."""
    big = cv2.resize(images[0], (5120, 3400), interpolation=cv2.INTER_NEAREST)
    capped = DWPose(standins["det"], tiny_models["pose"], max_side=640)
    frame = capped(big)
    small = cv2.resize(big, (640, 425), interpolation=cv2.INTER_AREA)
    expected = estimator(small)
    assert (frame.width, frame.height) == (5120, 3400)
    np.testing.assert_array_equal(frame.keypoints, expected.keypoints * [8.0, 8.0])
    np.testing.assert_array_equal(frame.boxes, expected.boxes * 8.0)
    np.testing.assert_array_equal(frame.scores, expected.scores)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_people": 0}, "max_people must be at least 1"),
        ({"max_side": 10}, "max_side must be at least 32"),
        ({"detector_channels": "hsv"}, "detector channels must be 'bgr' or 'rgb', got 'hsv'"),
    ],
)
def test_bad_options(standins, tiny_models, options, message):
    with pytest.raises(ValueError, match=message):
        DWPose(standins["det"], tiny_models["pose"], **options)


def test_bad_images_are_refused_by_name(estimator):
    with pytest.raises(ValueError, match=r"image 1: the image has no pixels"):
        estimator([np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8, 3), np.uint8)])


def test_from_pretrained_local_folder(tmp_path, standins, images):
    shutil.copy(standins["det"], tmp_path / "yolox_l.onnx")
    shutil.copy(standins["pose"], tmp_path / "dw-ll_ucoco_384.onnx")
    est = DWPose.from_pretrained(tmp_path, detector_channels="rgb")
    assert len(est(images[0])) == 2


def test_from_pretrained_hub_repo_offline(tmp_path, monkeypatch, standins, images):
    """A Hub repo id goes through the real huggingface_hub cache lookup, offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    add_to_hf_cache(cache, "someone/dwpose-standins", "det.onnx", standins["det"].read_bytes())
    add_to_hf_cache(cache, "someone/dwpose-standins", "pose.onnx", standins["pose"].read_bytes())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    est = DWPose.from_pretrained(
        "someone/dwpose-standins", detector="det.onnx", pose_model="pose.onnx"
    )
    assert len(est(images[0])) == 2
