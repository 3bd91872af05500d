"""The model loader, ComfyUI's memory management and the estimator's video mode.

The pack is loaded as ComfyUI loads it (test_nodes.py's fixtures). ComfyUI's own
`comfy.model_management` is used where a checkout is named by $COMFYUI_PATH (it needs only
torch and psutil to import); without one those tests are skipped, and the same protocol is
driven here directly. Video mode is checked against `dwpose video`'s engine on a real
encoded file, with tests/followers.py's models (their outputs follow the figures).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import types
import weakref
from pathlib import Path

import numpy as np
import pytest
import test_nodes
import torch
from followers import FollowingDetector, FollowingPose, draw_figures, follow
from test_nodes import as_image

# The pack as ComfyUI loads it, its nodes module, stand-in models, two frames.
env, pack, nodes, frames = test_nodes.env, test_nodes.pack, test_nodes.nodes, test_nodes.frames

SIZE = (96, 128)  # h, w
COUNT = 24


def figures(i: int) -> list[tuple]:
    """Two figures walking towards each other and crossing (as tests/test_video.py)."""
    h, w = SIZE
    x, x2 = 0.1 * w + 1.5 * i, 0.75 * w - 1.5 * i
    return [
        (0, x, 0.15 * h, x + 0.2 * w + 4 * np.sin(i / 4), 0.85 * h),
        (1, x2, 0.2 * h, x2 + 0.2 * w, 0.8 * h),
    ]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    import av

    path = tmp_path_factory.mktemp("video") / "walk.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height = SIZE[1], SIZE[0]
        stream.pix_fmt = "yuv420p"
        for i in range(COUNT):
            image = draw_figures(SIZE, figures(i))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def decoded(pack, video) -> np.ndarray:
    """The video's frames as `dwpose video` decodes them, (COUNT, h, w, 3) uint8."""
    library = importlib.import_module(f"{pack.__name__}.comfyui_dwpose.video")
    frames = [f for f in library.read_frames(video)]
    assert [f.time for f in frames] == [i / 30 for i in range(COUNT)]
    return np.stack([f.image for f in frames])


@pytest.fixture
def models(pack):
    module = sys.modules[pack.__name__ + ".comfy_models"]
    module._MODELS.clear()
    yield module
    module._MODELS.clear()


class Counted:
    """A model that counts its runs."""

    def __init__(self, model):
        self.model, self.runs = model, 0

    def run(self, batch):
        self.runs += 1
        return self.model.run(batch)

    def __getattr__(self, name):
        return getattr(self.model, name)


def following(nodes, models) -> types.SimpleNamespace:
    """A loaded DWPOSE_MODEL whose weights are followers (counted)."""
    model = nodes.get_model("det.onnx", "pose.onnx")
    detector, pose = model.load()
    model.model.detector = Counted(FollowingDetector(detector.input_size[0]))
    model.model.pose = Counted(FollowingPose(pose.input_size))
    return model


def run(nodes, image, **options) -> dict:
    return nodes.DWPoseEstimator().estimate(image, "det.onnx", "pose.onnx", **options)


# ------------------------------------------------------------------------------ loader


def test_loader_loads_once_and_estimator_options_never_reload(nodes, models, frames, env):
    loader = nodes.DWPoseModelLoader()
    (model,) = loader.load("det.onnx", "pose.onnx", "auto", "auto", "auto")
    assert model.loaded and model.loads == 1 and isinstance(model.model.pose, object)
    image = as_image(frames[:1])
    outs = [
        run(nodes, image, model=model),
        run(nodes, image, model=model, max_people=1),
        run(nodes, image, model=model, detector_channels="rgb", whole_image_fallback=True),
        run(nodes, image, model=model, threshold=0.6, resolution=256),
        run(nodes, image, model=model, detect_every=4, smooth=True, max_people=1),
    ]
    assert [len(o["result"][1][0]["people"]) for o in outs] == [2, 1, 2, 2, 1]
    assert model.loads == 1
    assert loader.load("det.onnx", "pose.onnx", "auto", "auto", "auto") == (model,)
    (other,) = loader.load("det.onnx", "pose.onnx", "onnxruntime", "cpu", "fp32")
    assert other is not model and model.loads == other.loads == 1
    # Connected, the model wins over the estimator's own menus.
    out = nodes.DWPoseEstimator().estimate(image, "gone.onnx", "gone.onnx", model=model)
    assert out["result"][1] == outs[0]["result"][1]


def test_loader_errors_show_on_the_loader(nodes, models, env):
    with pytest.raises(FileNotFoundError, match=r"'gone\.onnx' is not in the DWPose model folders"):
        nodes.DWPoseModelLoader().load("det.onnx", "gone.onnx")
    # Told by its graph's signature (comfyui_dwpose.catalog) before anything loads.
    with pytest.raises(Exception, match=r"det\.onnx is a detector model .* not a pose model"):
        nodes.DWPoseModelLoader().load("det.onnx", "det.onnx")


def test_unloading_drops_the_weights_and_the_next_run_loads_them(nodes, models, frames, env):
    """The methods ComfyUI's LoadedModel calls, as free_memory and load_models_gpu call them."""
    (model,) = nodes.DWPoseModelLoader().load("det.onnx", "pose.onnx")
    size = sum(os.path.getsize(f) for f in model.files)
    assert model.model_size() == model.loaded_size() == size
    assert model.current_loaded_device() == model.load_device == torch.device("cpu")
    session = weakref.ref(model.model.pose.session)
    model.detach(unpatch_all=False)  # load_models_gpu re-listing a loaded model: kept
    assert model.loaded and session() is not None
    assert model.detach(unpatch_all=True) is model.model  # free_memory's unload
    gc.collect()
    assert not model.loaded and session() is None and model.loaded_size() == 0
    assert model.partially_load(model.load_device, 1e32) == size and model.loads == 2
    assert model.partially_unload(model.offload_device, 1) == size and not model.loaded
    out = run(nodes, as_image(frames[:1]), model=model)
    assert model.loaded and model.loads == 3 and len(out["result"][1][0]["people"]) == 2


@pytest.fixture
def comfyui(monkeypatch):
    """ComfyUI's own comfy.model_management, on the CPU, from the checkout in $COMFYUI_PATH."""
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("set COMFYUI_PATH to a ComfyUI checkout to test with its model management")
    monkeypatch.syspath_prepend(path)
    cli_args = importlib.import_module("comfy.cli_args")
    monkeypatch.setattr(cli_args.args, "cpu", True)  # as `python main.py --cpu`
    management = importlib.import_module("comfy.model_management")
    yield management
    for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.")]:
        del sys.modules[name]


def test_comfyui_unload_releases_the_models(nodes, models, frames, env, comfyui, monkeypatch):
    monkeypatch.setattr(nodes, "model_management", comfyui)
    (model,) = nodes.DWPoseModelLoader().load("det.onnx", "pose.onnx")
    assert comfyui.loaded_models() == [model] and model.loads == 1
    image = as_image(frames[:1])
    first = run(nodes, image, model=model, max_people=1)
    assert comfyui.loaded_models() == [model] and model.loads == 1  # listed once, kept
    session = weakref.ref(model.model.pose.session)
    comfyui.unload_all_models()  # "Unload models"
    gc.collect()
    assert comfyui.loaded_models() == [] and not model.loaded and session() is None
    again = run(nodes, image, model=model, max_people=1)
    assert comfyui.loaded_models() == [model] and model.loads == 2
    assert again["result"][1] == first["result"][1]
    del model, again, first
    models._MODELS.clear()  # ComfyUI's node cache let go too ("Free model and node cache")
    gc.collect()
    comfyui.cleanup_models()
    assert comfyui.loaded_models() == []


# -------------------------------------------------------------------------- video mode


@pytest.mark.parametrize(
    "detect_every, smooth, people", [(4, True, 1), (8, False, None), (1, True, 2)]
)
def test_video_mode_gives_dwpose_videos_poses(
    pack, nodes, models, env, video, decoded, detect_every, smooth, people
):
    from comfyui_dwpose import DWPose

    library = importlib.import_module(f"{pack.__name__}.comfyui_dwpose.video")
    reference = DWPose(env.models / "det.onnx", env.models / "pose.onnx")
    follow(reference)
    expected = [
        pose.to_pose_keypoint(0.3)
        for pose, _ in library.iter_poses(
            video, reference, detect_every=detect_every, smooth=smooth, people=people
        )
    ]
    model = following(nodes, models)
    out = run(
        nodes, as_image(decoded), model=model, detect_every=detect_every, smooth=smooth,
        max_people=people or 0, fps=30.0,
    )  # fmt: skip
    pose_map, pose_keypoint = out["result"]
    assert len(pose_map) == len(pose_keypoint) == COUNT
    assert pose_keypoint == expected
    ids = {p["person_id"] for f in pose_keypoint for p in f["people"]}
    assert len(ids) == (1 if people == 1 else 2)  # max_people 1: the same person throughout
    assert out["ui"]["pose_keypoint"] == pose_keypoint


def test_detect_every_runs_the_detector_less(nodes, models, env, decoded):
    image = as_image(decoded)
    counts = {}
    for every in (1, 4, 8):
        models._MODELS.clear()
        model = following(nodes, models)
        out = run(nodes, image, model=model, detect_every=every, smooth=every == 1)
        runs = model.model.detector.runs
        counts[every] = runs
        assert out["ui"]["text"][0] == f"{COUNT} frame(s), 48 people found, detector run on {runs}"
    assert counts[1] == COUNT and counts[4] < COUNT / 2 and counts[8] < counts[4]


def test_progress_and_interrupt_at_every_model_run(nodes, models, env, decoded, monkeypatch):
    """ComfyUI's ProgressBar and interrupt check, replaced by recorders on the nodes module."""
    events = []

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value):
            events.append(("progress", value, self.total))

    class Interrupted(Exception):
        pass

    def throw_exception_if_processing_interrupted():
        events.append(("check",))
        if sum(e == ("check",) for e in events) == stop_at:
            raise Interrupted

    model = following(nodes, models)  # made outside ComfyUI: no model management
    monkeypatch.setattr(nodes, "comfy_utils", types.SimpleNamespace(ProgressBar=ProgressBar))
    monkeypatch.setattr(
        nodes,
        "model_management",
        types.SimpleNamespace(
            throw_exception_if_processing_interrupted=throw_exception_if_processing_interrupted
        ),
    )
    image = as_image(decoded[:3])
    stop_at = None
    for options in ({}, {"detect_every": 2}):
        events.clear()
        run(nodes, image, model=model, **options)
        # Each frame: the detector (when it runs) and the pose model, each after a check
        # that also re-sends the progress; then the frame is counted.
        # In video mode (detect_every 2) the second frame needs only the pose model.
        expected = [["check", 0, "check", 0, 1], ["check", 1, "check", 1, 2]]
        if options:
            expected[1] = ["check", 1, 2]
        expected.append(["check", 2, "check", 2, 3])
        got = [e[0] if len(e) == 1 else e[1] for e in events]
        assert got == [e for frame in expected for e in frame]
        assert {e[2] for e in events if len(e) == 3} == {3}
    events.clear()
    runs = model.model.detector.runs + model.model.pose.runs
    stop_at = 3
    with pytest.raises(Interrupted):
        run(nodes, image, model=model)
    assert model.model.detector.runs + model.model.pose.runs == runs + 2  # no third run


def test_frame_chunks_follow_the_device(nodes, models, env, frames):
    """On the CPU one frame per call and 8 crops per pose run (a run of the full models
    stays near a second); on a GPU, 8 frames together."""
    model = following(nodes, models)
    run(nodes, as_image(np.concatenate([frames] * 2)), model=model)
    assert model.on_cpu and model.model.detector.runs == 4
    assert nodes.FRAMES_PER_CALL == {"gpu": 8, "cpu": 1}
    assert nodes.POSE_BATCH == {"gpu": 32, "cpu": 8}
