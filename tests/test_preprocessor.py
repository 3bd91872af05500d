"""DWPosePreprocessor: inputs, sizes, output types, upstream argument names, and real
diffusers ControlNet pipelines (tiny, built offline) running on its maps.

Models: the golden stand-in detector and pose model (two people per COCO image).
"""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, add_to_hf_cache, assert_same_image
from PIL import Image

from comfyui_dwpose import DWPose, DWPosePreprocessor, PoseFrame, render_pose
from comfyui_dwpose.hub import NotCachedError
from comfyui_dwpose.images import ImageError, load_image
from comfyui_dwpose.limits import SizeLimitError


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Toy models are slower with threads than without (and a benchmark may share the CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pre(standins) -> DWPosePreprocessor:
    return DWPosePreprocessor(standins["det"], standins["pose"])


@pytest.fixture(scope="module")
def images(coco_images) -> list[np.ndarray]:
    """640x425, 500x333, 640x429: all give 96x64 maps at image_resolution=64."""
    return [load_image(coco_images[i]) for i in ("000000000785", "000000040083", "000000196141")]


def assert_same_frame(got: PoseFrame, expected: PoseFrame) -> None:
    assert (got.width, got.height) == (expected.width, expected.height)
    np.testing.assert_array_equal(got.keypoints, expected.keypoints)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(got.boxes, expected.boxes)


def to_uint8(control: np.ndarray) -> np.ndarray:
    return np.rint(control * 255).astype(np.uint8)


def test_the_map_is_render_pose_of_the_keypoints_at_the_output_size(pre, standins, images):
    pil, frame = pre(Image.fromarray(images[0]), image_resolution=64, return_keypoints=True)
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (96, 64)
    # 425 px is below detect_resolution=512: the engine ran on the image as it is.
    assert_same_frame(frame, DWPose(standins["det"], standins["pose"])(images[0]))
    assert len(frame) == 2 and (frame.width, frame.height) == (640, 425)
    expected = render_pose(frame, 96, 64)
    assert_same_image(np.asarray(pil), expected)
    assert int(expected.any(axis=-1).sum()) > 300  # two people drawn, not an empty canvas


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        ((640, 425), 512, (768, 512)),  # 771.0 / 8 = 96.4 -> 96
        ((500, 333), 512, (768, 512)),  # 768.8 / 8 = 96.1 -> 96
        ((425, 640), 512, (512, 768)),
        ((640, 392), 300, (488, 304)),  # 489.8 / 8 = 61.2 -> 61; 300 / 8 = 37.5 -> 38
        ((640, 392), None, (640, 392)),  # the image's own size, already multiples of 8
        ((500, 333), 0, (504, 336)),  # the image's own size: 62.5 -> 63, 41.6 -> 42
        ((30, 20), 4, (8, 8)),  # never below one multiple
    ],
)
def test_sizes_are_multiples_of_8(pre, size, resolution, expected):
    image = np.zeros((size[1], size[0], 3), np.uint8)
    assert pre(image, image_resolution=resolution).size == expected


def test_output_types(pre, images):
    pil = pre(images[0], image_resolution=64)
    expected = np.asarray(pil)

    array = pre(images[0], image_resolution=64, output_type="np")
    assert array.shape == (1, 64, 96, 3) and array.dtype == np.float32
    assert array.min() == 0.0 and array.max() == 1.0
    assert_same_image(to_uint8(array[0]), expected)

    tensor = pre(images[0], image_resolution=64, output_type="pt")
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    assert tuple(tensor.shape) == (1, 3, 64, 96) and tensor.is_contiguous()
    assert_same_image(to_uint8(tensor[0].permute(1, 2, 0).numpy()), expected)

    pils = pre(images, image_resolution=64)
    assert isinstance(pils, list) and [p.size for p in pils] == [(96, 64)] * 3
    batch = pre(images, image_resolution=64, output_type="pt")
    assert tuple(batch.shape) == (3, 3, 64, 96)
    for p, t in zip(pils, batch):
        assert_same_image(to_uint8(t.permute(1, 2, 0).numpy()), np.asarray(p))


def test_a_batch_equals_one_by_one(pre, images):
    batch, frames = pre(images, image_resolution=64, output_type="np", return_keypoints=True)
    assert isinstance(frames, list) and len(frames) == 3 and batch.shape == (3, 64, 96, 3)
    for image, control, frame in zip(images, batch, frames):
        alone, alone_frame = pre(
            image, image_resolution=64, output_type="np", return_keypoints=True
        )
        assert_same_frame(frame, alone_frame)
        assert_same_image(to_uint8(control), to_uint8(alone[0]))
        assert_same_image(to_uint8(control), render_pose(frame, 96, 64))


def test_detect_resolution_shrinks_and_maps_back(pre, standins, images):
    image = images[0]  # 640x425
    _, frame = pre(image, detect_resolution=256, return_keypoints=True)
    small = cv2.resize(image, (386, 256), interpolation=cv2.INTER_AREA)  # 385.5 -> 386
    expected = DWPose(standins["det"], standins["pose"])(small)
    assert (frame.width, frame.height) == (640, 425)
    scale = np.array([640 / 386, 425 / 256])
    np.testing.assert_allclose(frame.keypoints, expected.keypoints * scale)
    np.testing.assert_allclose(frame.boxes, expected.boxes * np.tile(scale, 2))
    np.testing.assert_array_equal(frame.scores, expected.scores)

    _, native = pre(image, detect_resolution=None, return_keypoints=True)
    _, also_native = pre(image, detect_resolution=1024, return_keypoints=True)
    assert_same_frame(native, also_native)
    assert_same_frame(native, DWPose(standins["det"], standins["pose"])(image))


def test_every_input_form_gives_the_same_map(pre, images):
    image = images[0]
    expected = pre(image, image_resolution=64, output_type="np")
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    forms = {
        "pil": Image.fromarray(image),
        "pil rgba": Image.fromarray(image).convert("RGBA"),
        "np float": image.astype(np.float32) / 255,
        "torch CHW 0-1 (diffusers)": chw,
        "torch HWC 0-1 (ComfyUI)": chw.permute(1, 2, 0),
        "torch uint8 CHW": torch.from_numpy(image).permute(2, 0, 1),
        "torch half": chw.half(),
    }
    for name, form in forms.items():
        got = pre(form, image_resolution=64, output_type="np")
        assert got.shape == (1, 64, 96, 3), name
        assert_same_image(to_uint8(got[0]), to_uint8(expected[0]))
    batches = {
        "np BHWC": np.stack([image, image]),
        "torch BCHW": torch.stack([chw, chw]),
        "list of tensors": [chw, chw],
        "tuple of PIL": (Image.fromarray(image), Image.fromarray(image)),
    }
    for name, batch in batches.items():
        got = pre(batch, image_resolution=64, output_type="np")
        assert got.shape == (2, 64, 96, 3), name
        assert_same_image(to_uint8(got[1]), to_uint8(expected[0]))


@pytest.mark.parametrize(
    ("parts", "drawn"),
    [
        ({"include_hand": False, "include_face": False}, {"hands": False, "face": False}),
        ({"include_body": False}, {"body": False}),
        ({"include_feet": True}, {"feet": True}),
    ],
)
def test_parts(pre, images, parts, drawn):
    image = images[2]  # both people have visible feet here
    everything, frame = pre(image, return_keypoints=True)
    got = np.asarray(pre(image, **parts))
    assert_same_image(got, render_pose(frame, *everything.size, **drawn))
    assert not np.array_equal(got, np.asarray(everything))


def test_upstream_argument_names(pre, images):
    """Scripts written for controlnet_aux or easy_dwpose run after changing the import."""
    image = Image.fromarray(images[0])
    no_hands = np.asarray(pre(image, include_hand=False))
    assert_same_image(np.asarray(pre(image, include_hands=False)), no_hands)  # easy_dwpose
    assert_same_image(np.asarray(pre(input_image=image, include_hand=False)), no_hands)
    assert not np.array_equal(np.asarray(pre(image)), no_hands)

    with pytest.warns(DeprecationWarning, match="hand_and_face is deprecated"):
        old = pre(image, hand_and_face=False)
    assert_same_image(
        np.asarray(old), np.asarray(pre(image, include_hand=False, include_face=False))
    )
    with pytest.warns(DeprecationWarning, match="return_pil is deprecated"):
        array = pre(image, return_pil=False)
    assert isinstance(array, np.ndarray) and array.shape == (1, 512, 768, 3)


def test_wrong_arguments_are_named(pre, images):
    image = images[0]
    with pytest.raises(TypeError, match=r"unexpected keyword arguments: detect_hands, upscale"):
        pre(image, upscale="lanczos", detect_hands=True)
    with pytest.raises(TypeError, match=r"draw_pose.*return_keypoints=True"):
        pre(image, draw_pose=None)
    with pytest.raises(TypeError, match=r"takes from 1 to 4 positional arguments"):
        pre(image, 512, 512, "pil")  # controlnet_aux's DWposeDetector order: output_type 4th
    with pytest.raises(TypeError, match=r"as `image` or as `input_image`"):
        pre(image, input_image=image)
    with pytest.raises(TypeError, match=r"needs an image"):
        pre()
    with pytest.raises(ValueError, match=r"output_type must be one of \('pil', 'np', 'pt'\)"):
        pre(image, output_type="latent")
    with pytest.raises(ValueError, match=r"image_resolution must be a whole number"):
        pre(image, image_resolution=-8)
    with pytest.raises(ValueError, match=r"detect_resolution must be a whole number"):
        pre(image, detect_resolution=512.0)
    with pytest.raises(ValueError, match=r"different sizes \(96x64, 104x64\).*output_type='pil'"):
        pre([image, np.zeros((392, 640, 3), np.uint8)], image_resolution=64, output_type="pt")
    with pytest.raises(ValueError, match=r"empty list"):
        pre([])
    with pytest.raises(TypeError, match=r"image 1: expected a PIL image.*got str"):
        pre([image, "dancer.jpg"])
    with pytest.raises(ImageError, match=r"values span -0.5 to -0.5.*\(image \+ 1\) / 2"):
        pre(torch.full((3, 64, 64), -0.5))
    with pytest.raises(ImageError, match=r"image: expected a tensor of shape CxHxW"):
        pre(torch.zeros(2, 2, 3, 8, 8))


def test_maps_beyond_the_limits_are_refused_before_any_work(pre, images):
    """Issue 12, case 4: a 1x10000 image at image_resolution=512 made a 512x5,120,000 map
    (18 GB peak). It is refused before the models run or memory is taken; nested lists
    are refused with their shape."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(SizeLimitError) as info:
            pre(np.zeros((10000, 1, 3), np.uint8), image_resolution=512)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        "image 0: a 512x5120000 pose map is beyond the limit of 32,768 pixels a side and "
        "268,435,456 pixels in all (about 768 MiB): choose a smaller resolution, or raise "
        "$DWPOSE_MAX_MAP_SIDE / $DWPOSE_MAX_MAP_PIXELS"
    )
    assert peak < 2**20  # bytes numpy allocated on the way to the refusal
    with pytest.raises(ImageError, match=r"got a nested list of shape \(2, 3, 3\)"):
        pre([[[0, 0, 0]] * 3] * 2)


def test_from_pretrained_local_folder_and_hub_cache(tmp_path, standins, images):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "det.onnx").write_bytes(standins["det"].read_bytes())
    (folder / "pose.onnx").write_bytes(standins["pose"].read_bytes())
    local = DWPosePreprocessor.from_pretrained(folder, detector="det.onnx", pose_model="pose.onnx")
    expected = np.asarray(local(images[0]))
    assert int(expected.any(axis=-1).sum()) > 0

    # A Hub repo through the real huggingface_hub cache lookup, in a cache_dir, offline.
    cache = tmp_path / "hub"
    add_to_hf_cache(cache, "someone/dwpose-standins", "det.onnx", standins["det"].read_bytes())
    add_to_hf_cache(cache, "someone/dwpose-standins", "pose.onnx", standins["pose"].read_bytes())
    hub = DWPosePreprocessor.from_pretrained(
        "someone/dwpose-standins", detector="det.onnx", pose_model="pose.onnx",
        cache_dir=cache, local_files_only=True,
    )  # fmt: skip
    assert_same_image(np.asarray(hub(images[0])), expected)
    with pytest.raises(NotCachedError, match="local_files_only=True"):
        DWPosePreprocessor.from_pretrained(
            "someone/other", detector="det.onnx", pose_model="pose.onnx",
            cache_dir=cache, local_files_only=True,
        )  # fmt: skip

    (folder / "det.onnx").unlink()  # neither way of skipping detection needs its file
    for skip in ({"detector": None}, {"use_detector": False}):
        whole = DWPosePreprocessor.from_pretrained(folder, pose_model="pose.onnx", **skip)
        assert whole.estimator.detector is None
        _, frame = whole(images[0], return_keypoints=True)
        np.testing.assert_array_equal(frame.boxes, [[0, 0, 640, 425]])


def test_to_device_rebuilds_and_returns_itself(standins, images):
    pre = DWPosePreprocessor(standins["det"], standins["pose"])
    before = pre.estimator
    expected = np.asarray(pre(images[0]))
    assert pre.to(torch.device("cpu")) is pre
    assert pre.device == "cpu" and pre.estimator is not before
    assert pre.estimator.pose.model.provider == "CPUExecutionProvider"
    assert_same_image(np.asarray(pre(images[0])), expected)
    same = pre.estimator
    assert pre.to("cpu").estimator is same  # already there: nothing reloaded


def test_importing_the_package_imports_neither_torch_nor_diffusers():
    code = (
        "import sys, comfyui_dwpose\n"
        "cls = comfyui_dwpose.DWPosePreprocessor\n"
        "print(cls.__module__, [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["comfyui_dwpose.preprocessor", "[]"]


# Real pipelines. Each runs two denoising steps on the preprocessor's output as it comes.


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import tiny_diffusers

    return tiny_diffusers, tmp_path_factory.mktemp("tokenizer")


def run(pipe, **inputs):
    return pipe(num_inference_steps=2, generator=torch.Generator().manual_seed(0), **inputs)


def test_sd_controlnet_pipeline(pre, images, tiny):
    module, folder = tiny
    pipe = module.sd_controlnet(folder)

    control, frame = pre(images[0], image_resolution=64, return_keypoints=True)
    assert_same_image(np.asarray(control), render_pose(frame, 96, 64))
    # What the ControlNet receives is the map itself, not a resized copy of it.
    seen = pipe.prepare_image(control, 96, 64, 1, 1, "cpu", torch.float32)
    assert_same_image(to_uint8(seen[0].permute(1, 2, 0).numpy()), np.asarray(control))
    out = run(pipe, prompt="a dancer", image=control, output_type="np").images
    assert out.shape == (1, 64, 96, 3) and np.isfinite(out).all()

    batch, frames = pre(images[:2], image_resolution=64, output_type="pt", return_keypoints=True)
    assert tuple(batch.shape) == (2, 3, 64, 96)
    assert_same_image(to_uint8(batch.permute(0, 2, 3, 1).numpy()), render_pose(frames, 96, 64))
    out = run(pipe, prompt=["a dancer", "a skier"], image=batch, output_type="pt").images
    assert tuple(out.shape) == (2, 3, 64, 96) and torch.isfinite(out).all()


def test_sdxl_controlnet_pipeline(pre, images, tiny):
    module, folder = tiny
    pipe = module.sdxl_controlnet(folder)

    control = pre(images[1], image_resolution=64, output_type="np", stick_width="xinsr")
    assert control.shape == (1, 64, 96, 3)
    out = run(pipe, prompt="a dancer", image=control, output_type="np").images
    assert out.shape == (1, 64, 96, 3) and np.isfinite(out).all()

    maps, frames = pre(images, image_resolution=64, return_keypoints=True)
    for m, f in zip(maps, frames):
        assert_same_image(np.asarray(m), render_pose(f, 96, 64))
    prompts = ["a dancer", "a skier", "a runner"]
    out = run(pipe, prompt=prompts, image=maps, output_type="pil").images
    assert [o.size for o in out] == [(96, 64)] * 3


def test_video_controlnet_pipeline_on_frames(pre, images, tiny):
    """AnimateDiff with a ControlNet: the frames of a clip in, one map per frame out."""
    module, folder = tiny
    pipe = module.animatediff_controlnet(folder)
    clip = [np.roll(images[0], 16 * i, axis=1) for i in range(3)]  # the dancers move right

    maps, frames = pre(clip, image_resolution=64, return_keypoints=True)
    assert [m.size for m in maps] == [(96, 64)] * 3
    for m, f in zip(maps, frames):
        assert_same_image(np.asarray(m), render_pose(f, 96, 64))
    assert frames[1].keypoints[0, 0, 0] != frames[0].keypoints[0, 0, 0]
    video = run(
        pipe, prompt="a dancer", conditioning_frames=maps, num_frames=3, width=96, height=64,
        output_type="np",
    ).frames  # fmt: skip
    assert video.shape == (1, 3, 64, 96, 3) and np.isfinite(video).all()


def moved(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    h, w = image.shape[:2]
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, shift, (w, h), borderMode=cv2.BORDER_REPLICATE)


def body_acceleration(frames: list[PoseFrame]) -> float:
    """Mean length of the second time difference of the body points each track shows on
    every frame: how much the skeletons shake."""
    shakes = []
    for track in frames[0].track_ids:
        people = [f.track_ids.tolist().index(track) for f in frames]
        points = np.stack([f.keypoints[n, :17] for f, n in zip(frames, people)])
        seen = np.all([f.scores[n, :17] > 0.3 for f, n in zip(frames, people)], axis=0)
        shakes.append(np.linalg.norm(np.diff(points[:, seen], 2, axis=0), axis=-1))
    return float(np.concatenate(shakes, axis=1).mean())


def test_video_frames_get_stable_ids_and_smoothing_steadies_them(pre, images):
    # Two people walk right 3 px a frame while the camera shakes by up to 4 px.
    rng = np.random.default_rng(0)
    video = [moved(images[0], 3 * k + rng.uniform(-4, 4), rng.uniform(-4, 4)) for k in range(16)]
    _, plain = pre(video, image_resolution=64, return_keypoints=True)
    _, tracked = pre(video, image_resolution=64, return_keypoints=True, track=True)
    for p, t in zip(plain, tracked):
        np.testing.assert_array_equal(t.keypoints, p.keypoints)  # ids only, nothing moved
        assert p.track_ids is None and sorted(t.track_ids.tolist()) == [0, 1]
        assert (
            t.track_ids[np.argmin(t.boxes[:, 0])]
            == tracked[0].track_ids[np.argmin(tracked[0].boxes[:, 0])]
        )  # the left person keeps its id on every frame

    maps, smoothed = pre(
        video, image_resolution=64, output_type="np", return_keypoints=True, smooth=True
    )
    assert maps.shape == (16, 64, 96, 3) and len(smoothed) == 16
    for control, frame in zip(maps, smoothed):
        assert_same_image(to_uint8(control), render_pose(frame, 96, 64))
    raw, steady = body_acceleration(tracked), body_acceleration(smoothed)
    assert steady < 0.5 * raw, (raw, steady)


def test_fps_must_be_positive(pre, images):
    with pytest.raises(ValueError, match="fps must be positive, got 0"):
        pre(images[0], fps=0)
