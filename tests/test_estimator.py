"""DWPose options and batching, on the golden stand-in detector and an official RTMPose-t."""

import shutil

import cv2
import numpy as np
import pytest
from conftest import add_to_hf_cache
from PIL import Image

from comfyui_dwpose import DWPose, PoseFrame
from comfyui_dwpose.images import ImageError, load_image
from comfyui_dwpose.runtime import ModelLoadError


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


def test_pil_images_and_other_pixel_types(estimator, images):
    """Issue 12, case 8: `DWPose()(PIL.Image)` said "'Image' object is not iterable"; float
    images in 0-255 were clipped as 0-1 (the models saw a white image)."""
    expected = estimator(images[0])
    assert_same_frame(estimator(Image.fromarray(images[0])), expected)
    [from_pil, _] = estimator([Image.fromarray(images[0]), images[1]])
    assert_same_frame(from_pil, expected)
    assert_same_frame(estimator(images[0].astype(np.float32)), expected)
    assert_same_frame(estimator(images[0].astype(np.int16)), expected)


def test_nested_lists_are_refused_with_their_shape(estimator, images):
    """A nested Python list silently became 425 "images"."""
    with pytest.raises(ImageError) as info:
        estimator(images[0].tolist())
    assert str(info.value) == (
        "images: expected an image or a list of images (arrays or PIL images), got a nested "
        "list of shape (425, 640, 3): convert it with np.asarray(image, np.uint8) first"
    )
    with pytest.raises(
        ImageError,
        match=r"^images: expected an HxWxC image or a BxHxWxC batch, got shape \(1, 2, 8, 8, 3\)$",
    ):
        estimator(np.zeros((1, 2, 8, 8, 3), np.uint8))
    with pytest.raises(ImageError, match=r"^images: expected an image .* got str$"):
        estimator("photo.jpg")


def symbolic(source, target, dims: dict[int, str]):
    """A copy of an ONNX model whose outputs leave `dims` symbolic, as torch.onnx.export
    writes them with dynamic axes."""
    import onnx

    proto = onnx.load(str(source))
    for output in proto.graph.output:
        for index, name in dims.items():
            dim = output.type.tensor_type.shape.dim[index]
            dim.Clear()
            dim.dim_param = f"{output.name}_{name}"
    onnx.save(proto, str(target))
    return target


def test_symbolic_output_dimensions_are_checked_by_running_once(
    standins, tiny_models, images, tmp_path
):
    """Case 9: a pose model with outputs [batch, 'simcc_x_dim_1', 576] was refused as
    "not a whole-body SimCC pose model ... Is it the detector?" although it is one."""
    pose = symbolic(tiny_models["pose"], tmp_path / "pose.onnx", {1: "dim_1"})
    detector = symbolic(standins["det"], tmp_path / "det.onnx", {1: "anchors", 2: "dim_2"})
    reference = DWPose(standins["det"], tiny_models["pose"])(images[0])
    assert_same_frame(DWPose(detector, pose)(images[0]), reference)
    with pytest.raises(
        ModelLoadError,
        match=r"det\.onnx is not a whole-body SimCC pose model.*Is it the detector\?",
    ):
        DWPose(None, detector)
    with pytest.raises(
        ModelLoadError, match=r"pose\.onnx is not a YOLOX person detector.*Is it the pose model\?"
    ):
        DWPose(pose, pose)
