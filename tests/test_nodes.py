"""The ComfyUI node pack, loaded the way ComfyUI loads a custom node folder.

ComfyUI is not installed here, so this also proves that the pack imports and its nodes
run without it (no progress bar, no interrupt checks, its own models folder). The only
stand-in for a ComfyUI module is a top-level `nodes` (ComfyUI owns that name) that fails
on use, present while the pack loads so that an absolute import would be caught. The
models are the golden stand-ins (tests/data/golden/README.md), not real DWPose weights.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import re
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
GOLDEN_IDS = ("000000000785", "000000040083", "000000196141", "000000197388")
IMAGE_ID = GOLDEN_IDS[0]
OPENPOSE_PARTS = {  # key: points
    "pose_keypoints_2d": 18,
    "face_keypoints_2d": 70,
    "hand_left_keypoints_2d": 21,
    "hand_right_keypoints_2d": 21,
}

# comfyui_controlnet_aux's node keys (NODE_CLASS_MAPPINGS of its __init__.py,
# hint_image_enchance.py and every node_wrappers/*.py at commit e8b689a5).
CONTROLNET_AUX_KEYS = {
    "AIO_Preprocessor", "AnimalPosePreprocessor", "AnimeFace_SemSegPreprocessor",
    "AnimeLineArtPreprocessor", "AnyLineArtPreprocessor_aux", "BAE-NormalMapPreprocessor",
    "BinaryPreprocessor", "CannyEdgePreprocessor", "ColorPreprocessor",
    "ControlNetAuxSimpleAddText", "ControlNetPreprocessorSelector", "DSINE-NormalMapPreprocessor",
    "DWPreprocessor", "DensePosePreprocessor", "DepthAnythingPreprocessor",
    "DepthAnythingV2Preprocessor", "DiffusionEdge_Preprocessor",
    "ExecuteAllControlNetPreprocessors", "FacialPartColoringFromPoseKps",
    "FakeScribblePreprocessor", "HEDPreprocessor", "HintImageEnchance",
    "ImageGenResolutionFromImage", "ImageGenResolutionFromLatent", "ImageIntensityDetector",
    "ImageLuminanceDetector", "InpaintPreprocessor", "LeReS-DepthMapPreprocessor",
    "LineArtPreprocessor", "LineartStandardPreprocessor", "M-LSDPreprocessor",
    "Manga2Anime_LineArt_Preprocessor", "MaskOptFlow", "MediaPipe-FaceMeshPreprocessor",
    "MeshGraphormer+ImpactDetector-DepthMapPreprocessor", "MeshGraphormer-DepthMapPreprocessor",
    "Metric3D-DepthMapPreprocessor", "Metric3D-NormalMapPreprocessor",
    "MiDaS-DepthMapPreprocessor", "MiDaS-NormalMapPreprocessor",
    "OneFormer-ADE20K-SemSegPreprocessor", "OneFormer-COCO-SemSegPreprocessor",
    "OpenposePreprocessor", "PiDiNetPreprocessor", "PixelPerfectResolution",
    "PyraCannyPreprocessor", "RenderAnimalKps", "RenderPeopleKps", "SAMPreprocessor",
    "SavePoseKpsAsJsonFile", "ScribblePreprocessor", "Scribble_PiDiNet_Preprocessor",
    "Scribble_XDoG_Preprocessor", "SemSegPreprocessor", "ShufflePreprocessor",
    "TEEDPreprocessor", "TTPlanet_TileGF_Preprocessor", "TTPlanet_TileSimple_Preprocessor",
    "TilePreprocessor", "UniFormer-SemSegPreprocessor", "Unimatch_OptFlowPreprocessor",
    "UpperBodyTrackingFromPoseKps", "Zoe-DepthMapPreprocessor", "Zoe_DepthAnythingPreprocessor",
}  # fmt: skip


def load_custom_node(folder: Path) -> types.ModuleType:
    """As ComfyUI's nodes.load_custom_node: a module spec from the folder's __init__.py,
    named after the folder's path (dots replaced), registered before it runs."""
    name = str(folder).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def taken(name: str) -> types.ModuleType:
    """A top-level module someone else owns (ComfyUI's `nodes`, comfyui_controlnet_aux's
    `dwpose`..., another installed `comfyui_dwpose`): using it fails the test."""
    module = types.ModuleType(name)

    def __getattr__(attr):
        raise AssertionError(f"the pack used top-level {name}.{attr}: import relatively")

    module.__getattr__ = __getattr__
    return module


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Offline, with the stand-in models in a models folder of their own ($DWPOSE_MODELS_DIR)."""
    golden = DATA / "golden"
    models = tmp_path_factory.mktemp("dwpose_models")
    for name in ("det.onnx", "pose.onnx"):
        shutil.copy(golden / "models" / name, models / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DWPOSE_MODELS_DIR", str(models))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield types.SimpleNamespace(golden=golden, models=models)


@pytest.fixture(scope="module")
def pack(env):
    with pytest.MonkeyPatch.context() as mp:
        for name in ("nodes", "comfyui_dwpose", "dwpose", "util", "processor"):
            mp.setitem(sys.modules, name, taken(name))
        module = load_custom_node(ROOT)
    yield module
    prefix = module.__name__ + "."
    for name in [n for n in sys.modules if n == module.__name__ or n.startswith(prefix)]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def nodes(pack):
    """The pack's nodes module (not ComfyUI's, not the repo root on sys.path)."""
    return sys.modules[pack.__name__ + ".nodes"]


@pytest.fixture(scope="module")
def frames(env) -> np.ndarray:
    """Two video frames of the same size: a COCO image and its mirror image (uint8 RGB)."""
    image = np.asarray(Image.open(DATA / "coco" / f"{IMAGE_ID}.jpg"))
    return np.stack([image, np.ascontiguousarray(image[:, ::-1])])


def as_image(frames: np.ndarray) -> torch.Tensor:
    """An IMAGE batch as ComfyUI's LoadImage makes it: float32 [B,H,W,3] in 0-1."""
    return torch.from_numpy(frames.astype(np.float32) / 255.0)


def estimate(nodes, *args, **kwargs):
    """The estimator node's result (pose_map, pose_keypoint), without its UI output."""
    return nodes.DWPoseEstimator().estimate(*args, **kwargs)["result"]


@pytest.fixture(scope="module")
def estimated(pack, nodes, frames):
    """The estimator node's outputs on the two frames, default options."""
    sys.modules[f"{pack.__name__}.comfy_models"]._MODELS.clear()
    return estimate(nodes, as_image(frames), "det.onnx", "pose.onnx")


def render_lib(nodes):
    """The bundled library's own functions, for comparisons."""
    return nodes.render_pose, nodes.from_pose_keypoint


# ------------------------------------------------------------------------ loading, API


def test_pack_loads_like_comfyui_and_uses_its_bundled_library(pack, nodes):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    assert pack.NODE_CLASS_MAPPINGS["DWPoseWB_Estimator"] is nodes.DWPoseEstimator
    models = sys.modules[f"{pack.__name__}.comfy_models"]
    assert models.DWPose.__module__ == f"{pack.__name__}.comfyui_dwpose.estimator"
    # Without ComfyUI: no progress, no interrupts, the pack's own models folder.
    assert nodes.folder_paths is None and nodes.comfy_utils is None
    assert nodes.model_management is None
    assert nodes.model_folders()[0] == ROOT / "models"


def test_node_keys_are_prefixed_and_free_of_controlnet_aux_keys(pack):
    keys = list(pack.NODE_CLASS_MAPPINGS)
    assert keys == [
        "DWPoseWB_ModelLoader", "DWPoseWB_Estimator", "DWPoseWB_Render", "DWPoseWB_TrackSmooth",
        "DWPoseWB_Retarget", "DWPoseWB_SaveKeypoints", "DWPoseWB_LoadKeypoints",
    ]  # fmt: skip
    assert not set(keys) & CONTROLNET_AUX_KEYS
    names = list(pack.NODE_DISPLAY_NAME_MAPPINGS.values())
    assert len(set(names)) == len(names) and all(n.startswith("DWPose ") for n in names)
    assert "DWPose Estimator" not in names  # comfyui_controlnet_aux's DWPreprocessor


def check_input(name: str, spec: tuple) -> None:
    assert isinstance(spec, tuple) and 1 <= len(spec) <= 2, name
    kind, options = spec[0], (spec[1] if len(spec) == 2 else {})
    assert isinstance(options, dict), name
    if isinstance(kind, list):  # a combo (files of the input folder: none there yet)
        assert kind or name == "keypoints_file", name
        assert all(isinstance(v, str) for v in kind), name
        assert "default" not in options or options["default"] in kind, name
        return
    assert isinstance(kind, str) and kind.isupper(), name
    if "default" in options:
        default = options["default"]
        expected = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}[kind]
        assert type(default) is expected, name
        assert options.get("min", default) <= default <= options.get("max", default), name


@pytest.mark.parametrize(
    "key",
    [
        "DWPoseWB_ModelLoader",
        "DWPoseWB_Estimator",
        "DWPoseWB_Render",
        "DWPoseWB_TrackSmooth",
        "DWPoseWB_Retarget",
        "DWPoseWB_SaveKeypoints",
        "DWPoseWB_LoadKeypoints",
    ],
)
def test_node_class_is_well_formed(pack, key):
    cls = pack.NODE_CLASS_MAPPINGS[key]
    types_ = cls.INPUT_TYPES()
    assert set(types_) <= {"required", "optional", "hidden"} and types_["required"]
    inputs = {**types_["required"], **types_.get("optional", {})}
    for name, spec in inputs.items():
        check_input(name, spec)
    assert isinstance(cls.RETURN_TYPES, tuple)
    assert all(isinstance(t, str) and t.isupper() for t in cls.RETURN_TYPES)
    for attr in ("RETURN_NAMES", "OUTPUT_TOOLTIPS"):
        assert len(getattr(cls, attr, cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
    assert isinstance(cls.CATEGORY, str) and cls.CATEGORY
    method = getattr(cls, cls.FUNCTION)
    inspect.signature(method).bind(cls(), **dict.fromkeys(inputs))  # takes every input


def test_model_combos_list_known_names_and_local_files(nodes, env):
    detector = nodes.DWPoseEstimator.INPUT_TYPES()["required"]["detector"]
    pose = nodes.DWPoseEstimator.INPUT_TYPES()["required"]["pose_model"]
    # Registry names first (labelled until downloaded); local files in the menu they fit.
    assert detector[0][0] == detector[1]["default"]
    assert detector[0][0].startswith("yolox_l.onnx")
    assert pose[0][0] == pose[1]["default"]
    assert pose[0][0].startswith("dw-ll_ucoco_384.onnx")
    assert {"det.onnx", nodes.NO_DETECTOR} <= set(detector[0]) and "pose.onnx" not in detector[0]
    assert "pose.onnx" in pose[0] and "det.onnx" not in pose[0]


# ---------------------------------------------------------------------- the estimator


def test_estimator_node_maps(pack, nodes, frames, estimated, env):
    pose_map, pose_keypoint = estimated
    assert pose_map.shape == (2, 425, 640, 3) and pose_map.dtype == torch.float32
    assert pose_map.min() >= 0.0 and pose_map.max() <= 1.0
    pixels = pose_map.numpy() * 255.0
    np.testing.assert_array_equal(pixels, np.rint(pixels))  # exactly uint8 / 255
    maps = np.rint(pixels).astype(np.uint8)
    assert all(m.any() for m in maps)
    render_pose, from_pose_keypoint = render_lib(nodes)
    # The node adds nothing: the library on the same frames draws the same maps...
    DWPose = sys.modules[f"{pack.__name__}.comfyui_dwpose.estimator"].DWPose
    direct = DWPose(env.models / "det.onnx", env.models / "pose.onnx")(list(frames))
    np.testing.assert_array_equal(maps, render_pose(direct))
    # ...and so does drawing the frames it returned.
    np.testing.assert_array_equal(maps, render_pose(from_pose_keypoint(pose_keypoint)))


def test_estimator_node_pose_keypoint_layout(estimated, env):
    _, pose_keypoint = estimated
    golden = json.loads((env.golden / IMAGE_ID / "comfy_ort" / "pose_keypoint.json").read_text())
    assert isinstance(pose_keypoint, list) and len(pose_keypoint) == 2
    json.dumps(pose_keypoint)  # plain JSON values only
    for frame in pose_keypoint:
        assert (frame["canvas_width"], frame["canvas_height"]) == (640, 425)
        assert len(frame["people"]) == 2
        for person in frame["people"]:
            assert set(golden[0]["people"][0]) == set(OPENPOSE_PARTS) <= set(person)
            assert person["pose_keypoints_2d"] is not None
            for key, count in OPENPOSE_PARTS.items():
                if person[key] is None:
                    continue
                points = np.asarray(person[key]).reshape(-1, 3)
                assert len(points) == count
                hidden = (points == 0).all(axis=1)
                assert ((points[:, 2] == 1.0) | hidden).all()
                assert (points[:, 2] == 1.0).any()  # a part with no visible point is null


def test_rgb_detector_gives_comfyui_controlnet_aux_keypoints(nodes, frames, env):
    """Fed RGB as comfyui_controlnet_aux does, the four OpenPose parts equal its own."""
    golden = json.loads((env.golden / IMAGE_ID / "comfy_ort" / "pose_keypoint.json").read_text())
    _, got = estimate(nodes, as_image(frames[:1]), "det.onnx", "pose.onnx", detector_channels="rgb")
    assert len(got) == len(golden) == 1
    assert len(got[0]["people"]) == len(golden[0]["people"])
    for ours, theirs in zip(got[0]["people"], golden[0]["people"]):
        assert {k: ours[k] for k in theirs} == theirs


def test_estimator_node_options(nodes, frames, env):
    image = as_image(frames)
    run = functools.partial(estimate, nodes)
    pose_map, _ = run(image, "det.onnx", "pose.onnx", resolution=512)
    assert pose_map.shape == (2, 512, 771, 3)  # as comfyui_controlnet_aux (test_golden.py)
    _, one = run(image, "det.onnx", "pose.onnx", max_people=1)
    assert [len(f["people"]) for f in one] == [1, 1]
    _, whole = run(image, nodes.NO_DETECTOR, "pose.onnx")
    assert [f["people"][0]["box"][:4] for f in whole] == [[0, 0, 640, 425]] * 2


def test_render_node_reproduces_the_estimator_map(nodes, frames, estimated, env):
    pose_map, pose_keypoint = estimated
    (rendered,) = nodes.DWPoseRender().render(pose_keypoint)
    assert torch.equal(rendered, pose_map)
    drawing = {"resolution": 512, "feet": True, "face": False, "threshold": 0.5}
    drawing["xinsr_stick_width"] = True
    pose_map, pose_keypoint = estimate(nodes, as_image(frames), "det.onnx", "pose.onnx", **drawing)
    (rendered,) = nodes.DWPoseRender().render(pose_keypoint, **drawing)
    assert rendered.shape == (2, 512, 771, 3) and torch.equal(rendered, pose_map)


@pytest.mark.parametrize("image_id", GOLDEN_IDS)
def test_render_node_draws_controlnet_aux_pose_keypoint(nodes, env, image_id):
    """comfyui_controlnet_aux's POSE_KEYPOINT (visible c = 1) draws upstream's exact map."""
    value = json.loads((env.golden / image_id / "comfy_ort" / "pose_keypoint.json").read_text())
    expected = np.asarray(Image.open(env.golden / image_id / "official_rgb" / "pose.png"))
    (rendered,) = nodes.DWPoseRender().render(value)
    got = np.rint(rendered[0].numpy() * 255.0).astype(np.uint8)
    assert rendered.shape == (1, *expected.shape)
    assert int((got != expected).any(axis=-1).sum()) == 0


def test_estimator_options_never_reload_the_models(pack, nodes, frames, env):
    models = sys.modules[pack.__name__ + ".comfy_models"]
    models._MODELS.clear()
    run = functools.partial(estimate, nodes)
    image = as_image(frames[:1])
    run(image, "det.onnx", "pose.onnx")
    [first] = models._MODELS.values()
    run(image, "det.onnx", "pose.onnx", resolution=256, face=False)
    run(image, "det.onnx", "pose.onnx", detector_channels="rgb", whole_image_fallback=True)
    _, one = run(image, "det.onnx", "pose.onnx", max_people=1, threshold=0.5)
    assert list(models._MODELS.values()) == [first] and first.loads == 1
    assert nodes.get_model("det.onnx", "pose.onnx") is first
    assert [len(f["people"]) for f in one] == [1]
    run(image, nodes.NO_DETECTOR, "pose.onnx")  # other files: another model, kept beside
    assert len(models._MODELS) == models.CACHE_SIZE == 2 and first.loads == 1


def test_cpu_fallback_on_a_gpu_machine_is_said_on_the_node_and_in_the_log(
    pack, nodes, frames, env, monkeypatch, caplog
):
    # As on a GPU: "auto" tries the torch backend first. The stand-in models are not
    # official architectures, so they cannot be converted and run on onnxruntime (CPU).
    runtime = sys.modules[pack.__name__ + ".comfyui_dwpose.runtime"]
    models = sys.modules[pack.__name__ + ".comfy_models"]
    monkeypatch.setattr(runtime, "_torch_has_gpu", lambda device: True)
    models._MODELS.clear()
    with caplog.at_level("WARNING"):
        out = nodes.DWPoseEstimator().estimate(as_image(frames[:1]), "det.onnx", "pose.onnx")
    models._MODELS.clear()
    summary, det, pose = out["ui"]["text"]
    assert summary == "1 frame(s), 2 people found, detector run on 1"
    assert det.startswith("det.onnx: ") and pose.startswith("pose.onnx: the graph has no SimCC")
    for text in (det, pose):
        assert text.endswith("; running it on onnxruntime instead, on the CPU, much slower")
        assert text in caplog.text
    pose_map, _ = out["result"]
    assert pose_map.shape == (1, 425, 640, 3)


# ------------------------------------------------------------------------------ errors


def test_missing_model_offline_says_where_to_put_it(nodes, frames, env, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(Exception, match=r"yolox_l\.onnx") as info:
        nodes.DWPoseEstimator().estimate(as_image(frames[:1]), "yolox_l.onnx", "pose.onnx")
    assert type(info.value).__name__ == "NotCachedError"
    assert str(ROOT / "models" / "yolox_l.onnx") in str(info.value)
    with pytest.raises(FileNotFoundError, match="not in the DWPose model folders"):
        nodes.DWPoseEstimator().estimate(as_image(frames[:1]), "gone.onnx", "pose.onnx")


def test_wrong_model_kind_and_bad_images_raise_clear_errors(nodes, frames, env):
    run = functools.partial(estimate, nodes)
    with pytest.raises(Exception, match=r"pose\.onnx is a pose model .* not a detector model"):
        run(as_image(frames[:1]), "pose.onnx", "pose.onnx")
    broken = as_image(frames)
    broken[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="IMAGE frame 1: the image has NaN"):
        run(broken, "det.onnx", "pose.onnx")
    with pytest.raises(ValueError, match=r"expected an IMAGE batch \[B,H,W,3\]"):
        run(as_image(frames)[0], "det.onnx", "pose.onnx")
    with pytest.raises(ValueError, match="no frames"):
        nodes.DWPoseRender().render([])


# ------------------------------------------------------------------- track and smooth


def body_acceleration(pose_keypoint: list[dict]) -> float:
    """Mean length of the second time difference of each person_id's seen OpenPose body
    points (those seen on every frame): how much the skeletons shake."""
    tracks: dict[int, list[np.ndarray]] = {}
    for entry in pose_keypoint:
        for person in entry["people"]:
            points = np.reshape(person["pose_keypoints_2d"], (18, 3))
            tracks.setdefault(person["person_id"], []).append(points)
    shakes = []
    for points in tracks.values():
        points = np.stack(points)
        seen = (points[:, :, 2] > 0).all(axis=0)
        shakes.append(np.linalg.norm(np.diff(points[:, seen, :2], 2, axis=0), axis=-1).ravel())
    return float(np.concatenate(shakes).mean())


def test_track_smooth_node_gives_ids_and_steadier_video_poses(nodes, frames, env):
    # Two people walking right 3 px a frame under a camera shaking by up to 4 px.
    rng = np.random.default_rng(0)
    image, (h, w) = frames[0], frames[0].shape[:2]
    video = np.stack([
        cv2.warpAffine(image, np.float32([[1, 0, 3 * k + rng.uniform(-4, 4)],
                                          [0, 1, rng.uniform(-4, 4)]]), (w, h),
                       borderMode=cv2.BORDER_REPLICATE)
        for k in range(12)
    ])  # fmt: skip
    _, raw = estimate(nodes, as_image(video), "det.onnx", "pose.onnx")
    node = nodes.DWPoseTrackSmooth()

    (tracked,) = node.track(raw, smooth=False)
    assert len(tracked) == 12 and all(len(e["people"]) == 2 for e in tracked)
    for before, after in zip(raw, tracked):  # tracking alone moves nothing
        for a, b in zip(before["people"], after["people"]):
            assert a["keypoints_133"] == b["keypoints_133"] and "person_id" not in a
    left = [min(e["people"], key=lambda p: p["box"][0])["person_id"] for e in tracked]
    assert sorted({p["person_id"] for e in tracked for p in e["people"]}) == [0, 1]
    assert len(set(left)) == 1  # the left person keeps its id on every frame

    (smoothed,) = node.track(raw)
    assert body_acceleration(smoothed) < 0.5 * body_acceleration(tracked)
    (pose_map,) = nodes.DWPoseRender().render(smoothed)
    assert pose_map.shape == (12, h, w, 3)

    (one,) = node.track(raw, max_people=1)
    assert len({p["person_id"] for e in one for p in e["people"]}) == 1
    assert all(len(e["people"]) == 1 for e in one)
    with pytest.raises(ValueError, match="holds no frames"):
        node.track([])


def test_retarget_node_moves_the_dance_onto_a_reference_pose_or_image(pack, nodes, frames, env):
    _, raw = estimate(nodes, as_image(frames), "det.onnx", "pose.onnx")
    (tracked,) = nodes.DWPoseTrackSmooth().track(raw, smooth=False)
    node = nodes.DWPoseRetarget()
    library = importlib.import_module(f"{pack.__name__}.comfyui_dwpose.retarget")
    driving = nodes.from_pose_keypoint(tracked)

    # Onto a pose: the first frame of a POSE_KEYPOINT (here the second video frame's).
    (out,) = node.retarget(tracked, anchor="hips", reference_pose=raw[1:])
    reference = nodes.from_pose_keypoint(raw[1])[0]
    expected = library.retarget(driving, reference, anchor="hips")
    got = nodes.from_pose_keypoint(out)
    assert [len(f) for f in got] == [1, 1]  # the main dancer onto the largest person
    assert all(np.allclose(g.keypoints, e.keypoints) for g, e in zip(got, expected))
    assert [p["person_id"] for e in out for p in e["people"]] == [
        int(f.track_ids[0]) for f in expected
    ]

    # Onto an image: DWPose finds its people first; the canvas becomes the image's.
    half = np.ascontiguousarray(frames[0][:, : frames.shape[2] // 2])
    (out,) = node.retarget(tracked, person=1, reference_image=as_image(half[None]),
                           detector="det.onnx", pose_model="pose.onnx")  # fmt: skip
    found = nodes.get_model("det.onnx", "pose.onnx").estimator()(half)
    expected = library.retarget(driving, found, person=1)
    got = nodes.from_pose_keypoint(out)
    assert (out[0]["canvas_width"], out[0]["canvas_height"]) == (half.shape[1], half.shape[0])
    assert all(np.allclose(g.keypoints, e.keypoints) for g, e in zip(got, expected))

    with pytest.raises(ValueError, match="connect one reference"):
        node.retarget(tracked)
    with pytest.raises(ValueError, match="connect one reference"):
        node.retarget(tracked, reference_pose=raw, reference_image=as_image(half[None]))
    with pytest.raises(ValueError, match="reference pose shows nobody"):
        node.retarget(
            tracked, reference_pose=[{"people": [], "canvas_width": 8, "canvas_height": 8}]
        )


# --------------------------------------------------------------------------- save JSON


def test_save_keypoints_node_writes_numbered_json(nodes, estimated, tmp_path, monkeypatch):
    monkeypatch.setattr(nodes, "output_directory", lambda: tmp_path)
    _, pose_keypoint = estimated
    save = nodes.DWPoseSaveKeypoints().save
    first = save(pose_keypoint, "dwpose/keypoints")
    second = save(pose_keypoint[0], "dwpose/keypoints")  # one frame dict: still a list
    names = [first["result"][0], second["result"][0]]
    assert names == [
        "dwpose/keypoints_00001.json [output]",
        "dwpose/keypoints_00002.json [output]",
    ]
    paths = [tmp_path / n.removesuffix(" [output]") for n in names]
    assert first["ui"]["text"] == [names[0]]
    assert json.loads(paths[0].read_text()) == pose_keypoint
    assert json.loads(paths[1].read_text()) == pose_keypoint[:1]
    assert sorted(p.name for p in paths[0].parent.iterdir()) == [p.name for p in paths]
    with pytest.raises(ValueError, match="outside the output folder"):
        save(pose_keypoint, "../escape")


# ---------------------------------------------------------------------------- install.py


@pytest.fixture(scope="module")
def install():
    spec = importlib.util.spec_from_file_location("dwpose_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ORT, CV = "onnxruntime", "opencv-python-headless>=4.10,<5"


@pytest.mark.parametrize(
    ("installed", "missing"),
    [
        ([], [ORT, CV]),
        (["numpy", "torch"], [ORT, CV]),
        (["onnxruntime-gpu", "opencv-contrib-python"], []),
        (["onnxruntime_directml", "OpenCV-Python"], []),
        (["onnxruntime-openvino", "opencv-python-headless"], []),
        (["onnxruntime-extensions", "onnxruntime-genai", "opencv-python"], [ORT]),
        (["ort-nightly-gpu"], [CV]),
    ],
)
def test_install_adds_a_build_only_where_none_is_installed(install, installed, missing):
    commands = []
    assert install.main(dict.fromkeys(installed, "4.12.0"), run=commands.append) == 0
    pins = ["numpy==4.12.0"] if "numpy" in installed else []
    assert commands == [[sys.executable, "-m", "pip", "install", m, *pins] for m in missing]


def test_install_warns_and_keeps_what_is_there(install, capsys):
    commands = []
    installed = {
        "numpy": "2.4.1",
        "onnxruntime": "1.20",
        "onnxruntime-gpu": "1.20",
        "opencv-python": "5.0.0.93",
    }
    install.main(installed, run=commands.append)
    out = capsys.readouterr().out
    assert commands == []
    assert "several onnxruntime builds are installed (onnxruntime, onnxruntime-gpu)" in out
    assert "with OpenCV 5.0.0.93 boxes and keypoints can differ" in out
    assert '-m pip install "opencv-python>=4.10,<5" numpy==2.4.1`' in out  # same package
    # Every OpenCV 4 from 4.8 gives upstream's results (tests/opencv_matrix.py).
    for numpy, version, exact in [
        ("1.26.4", "4.8.1.78", True),
        ("2.2.6", "4.12.0.88", True),
        ("2.4.1", "4.13.0.92", True),
        ("2.4.1", "4.14.0.94", True),
        ("1.26.4", "3.4.18.65", False),
        ("2.4.1", "5.1.0.95", False),
    ]:
        opencv = {"numpy": numpy, "onnxruntime": "1.20", "opencv-contrib-python": version}
        install.main(opencv, run=commands.append)
        assert ("can differ" not in capsys.readouterr().out) == exact
    assert commands == []


def test_gpu_needs_nothing_beyond_requirements_and_install_says_so(install, capsys):
    # On a GPU the nodes convert the default .onnx models for ComfyUI's torch: that needs
    # onnx (reading) and safetensors (keeping the result), so ComfyUI-Manager installs them.
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    names = {re.split(r"[<>=\s#]", line, maxsplit=1)[0] for line in lines if line[:1].isalpha()}
    assert {"onnx", "safetensors", "torch", "scipy"} <= names
    install.main({"onnxruntime": "1.20", "opencv-python": "4.12.0"}, run=list)
    out = capsys.readouterr().out
    assert install.GPU_NOTE in out and "onnxruntime-gpu" not in out


def test_install_tells_when_the_opencv_kept_cannot_import_with_numpy(install, capsys):
    """OpenCV 4.8/4.9 are built for numpy 1 (their wheels do not say so)."""
    install.main({"numpy": "2.4.1", "onnxruntime": "1.20", "opencv-python": "4.9.0.80"})
    out = capsys.readouterr().out
    assert "OpenCV 4.9.0.80 is built for numpy 1 and does not import under numpy 2.4.1" in out
    assert '-m pip install "opencv-python>=4.10,<5" numpy==2.4.1`' in out
    install.main({"numpy": "1.26.4", "onnxruntime": "1.20", "opencv-python": "4.9.0.80"})
    assert "warning" not in capsys.readouterr().out


# numpy requirements of the OpenCV wheels on PyPI for Python 3.10+ (their METADATA); 4.8
# and 4.9 are built for numpy 1 although they allow numpy 2.
OPENCV_WHEELS = {
    "4.8.1.78": ["numpy>=1.21.2", 'numpy>=1.23.5; python_version >= "3.11"'],
    "4.9.0.80": ["numpy>=1.21.2", 'numpy>=1.23.5; python_version >= "3.11"'],
    "4.10.0.84": ["numpy>=1.21.2", 'numpy>=1.23.5; python_version >= "3.11"'],
    "4.11.0.86": ["numpy>=1.21.2", 'numpy>=1.23.5; python_version >= "3.11"'],
    "4.12.0.88": ["numpy<2.3.0,>=2"],
    "4.13.0.92": ["numpy>=2"],
    "4.14.0.94": ["numpy>=2"],
    "5.0.0.93": ["numpy>=2"],
}


def fake_wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    """A wheel with nothing but metadata: enough for pip to resolve versions."""
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{dist}.dist-info/METADATA", metadata)
        archive.writestr(f"{dist}.dist-info/WHEEL", wheel)
        archive.writestr(f"{dist}.dist-info/RECORD", "")


@pytest.mark.parametrize(
    ("numpy", "chosen"), [("1.26.4", "4.11.0.86"), ("2.2.6", "4.14.0.94"), ("2.4.1", "4.14.0.94")]
)
def test_install_picks_an_opencv_that_fits_the_numpy_installed(install, tmp_path, numpy, chosen):
    """install.py's own pip command, resolved by the real pip against the OpenCV wheels'
    numpy requirements (offline, from metadata-only wheels): the newest OpenCV 4 that
    fits the installed numpy, which stays as it is."""
    import os
    import subprocess

    for version, requires in OPENCV_WHEELS.items():
        fake_wheel(tmp_path, "opencv-python-headless", version, requires)
    for version in ("1.26.4", "2.2.6", "2.4.1"):
        fake_wheel(tmp_path, "numpy", version, [])
    commands = []
    install.main({"numpy": numpy, "onnxruntime": "1.20"}, run=commands.append)
    [command] = commands
    offline = ["--dry-run", "--ignore-installed", "--quiet", "--report", "-", "--no-index"]
    offline += ["--find-links", str(tmp_path)]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # no index, no constraints from config
    out = subprocess.run(command + offline, capture_output=True, text=True, env=env, check=True)
    picked = {
        item["metadata"]["name"]: item["metadata"]["version"]
        for item in json.loads(out.stdout)["install"]
    }
    assert picked == {"opencv-python-headless": chosen, "numpy": numpy}


def test_install_reads_this_pythons_distributions(install):
    installed = install.installed_distributions()
    assert installed["numpy"] == np.__version__ and "onnxruntime" in installed


# ---------------------------------------------------------------------------- workflow
# The shipped workflows are checked against the nodes in tests/test_workflows.py.


def test_malformed_pose_keypoint_and_huge_maps_are_refused_before_work(nodes, frames, env):
    """Issue 12, cases 3 and 4 in ComfyUI: one message naming the frame and the field;
    a map beyond the size limits refused before the models run or memory is taken."""
    bad = [{"canvas_width": 64, "canvas_height": 48, "people": []},
           {"canvas_width": 64, "canvas_height": 48, "people": [{"box": [1, 2, 3]}]}]  # fmt: skip
    with pytest.raises(ValueError) as info:
        nodes.DWPoseRender().render(bad)
    assert str(info.value) == (
        "POSE_KEYPOINT: frame 1: people[0].box: expected [x1, y1, x2, y2] or "
        "[x1, y1, x2, y2, score], got 3 numbers"
    )
    height, width = frames.shape[1:3]  # 16384 on the short side: the long side is too long
    long_side = round(width * 16384 / height)
    with pytest.raises(ValueError) as info:
        nodes.DWPoseEstimator().estimate(
            as_image(frames[:1]), "det.onnx", "pose.onnx", resolution=16384
        )
    assert str(info.value) == (
        f"a {long_side}x16384 pose map is beyond the limit of 32,768 pixels a side and "
        "268,435,456 pixels in all (about 768 MiB): choose a smaller resolution, or raise "
        "$DWPOSE_MAX_MAP_SIDE / $DWPOSE_MAX_MAP_PIXELS"
    )
