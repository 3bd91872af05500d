"""The ComfyUI estimator node on the CPU with DWPose's compute: video mode against per-frame,
the cost of changing an option on a loaded model, and memory returned on unload.

Models: YOLOX-L 640x640 and RTMPose-l 384x288 with seeded weights (bench/common.py, the
files bench/video.py and bench/speed.py export), run by onnxruntime on the CPU inside
tests/followers.py's stand-ins: every call runs the real network (its full compute), then
the output is replaced by one that follows the figure, so that tracking has someone to
follow. Frames: 64 frames, 512x512, one figure dancing (swaying, bobbing, arms opening),
fed to the node as ComfyUI's IMAGE batch. The pack is loaded as ComfyUI loads it.

1. Video mode (detect_every 8, smoothing) against per-frame (detect_every 1), same batch,
   taking turns (--rounds), each timed from the node call to its return.
2. max_people changed on a loaded model: runs of one frame alternating max_people 0/1
   against runs repeating the same options; the difference of the medians is what the
   change costs. Also the time a reload of both models takes (what a change cost before).
3. Memory: resident set (VmRSS) before loading, loaded and run, and after ComfyUI's
   "Unload models" (comfy.model_management.unload_all_models from $COMFYUI_PATH when set,
   else the same unload call its free_memory makes) and a garbage collection.

Run:  python bench/comfy_nodes.py [--frames 64] [--rounds 1]
      COMFYUI_PATH=/path/to/ComfyUI python bench/comfy_nodes.py   (ComfyUI's unload)
Needs torch, onnx, onnxruntime and scipy (the dev install).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from common import CACHE, DET_SIZE, POSE_SIZE, machine_line, seeded_nets  # noqa: E402
from followers import FollowingDetector, FollowingPose, draw_figures  # noqa: E402

SIZE = 512
FPS = 30
DET_FILE, POSE_FILE = "yolox_l_raw.onnx", "rtmpose_l_384x288.onnx"


def dancer(i: int) -> list[tuple]:
    """One figure (colour, x1, y1, x2, y2) at frame i: swaying, bobbing, arms opening."""
    t = i / FPS
    centre = SIZE / 2 + 25 * math.sin(2 * math.pi * 0.4 * t)
    half_w = 80 * (1 + 0.3 * math.sin(2 * math.pi * 1.1 * t))
    top = 70 + 20 * math.sin(2 * math.pi * 0.9 * t)
    return [(0, centre - half_w, top, centre + half_w, SIZE - 40)]


def export_models() -> None:
    """The seeded nets as ONNX, cached under the names bench/video.py gives them."""
    if (CACHE / DET_FILE).exists() and (CACHE / POSE_FILE).exists():
        return
    from comfyui_dwpose.nets import export_onnx

    CACHE.mkdir(exist_ok=True)
    detector, pose = seeded_nets()
    export_onnx(detector, CACHE / DET_FILE, DET_SIZE, dynamic_batch=False)
    export_onnx(pose, CACHE / POSE_FILE)


def load_pack():
    """The node pack as ComfyUI imports it: a package named after its folder."""
    name = "comfyui_dwpose_pack"
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return sys.modules[f"{name}.nodes"]


def comfyui_management():
    """ComfyUI's comfy.model_management on the CPU, when $COMFYUI_PATH names a checkout."""
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        return None
    sys.path.insert(0, path)
    importlib.import_module("comfy.cli_args").args.cpu = True
    return importlib.import_module("comfy.model_management")


def following(model) -> None:
    """Wrap the loaded real models in followers (the real networks still run)."""
    detector, pose = model.load()
    model.model.detector = FollowingDetector(DET_SIZE[0], detector)
    model.model.pose = FollowingPose(POSE_SIZE, pose)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--option-runs", type=int, default=6)
    parser.add_argument("--parts", default="1,2,3", help="which measurements, e.g. 2,3")
    args = parser.parse_args()

    import onnxruntime
    import torch

    export_models()
    os.environ["DWPOSE_MODELS_DIR"] = str(CACHE)
    nodes = load_pack()  # first: with ComfyUI on the path it would import comfy.utils too
    management = comfyui_management()
    if management is not None:
        nodes.model_management = management
    print(machine_line(onnxruntime=onnxruntime.__version__, torch=torch.__version__))
    frames = np.stack([draw_figures((SIZE, SIZE), dancer(i)) for i in range(args.frames)])
    image = torch.from_numpy(frames.astype(np.float32) / 255.0)
    estimator = nodes.DWPoseEstimator()

    parts = {int(x) for x in args.parts.split(",")}
    loader = nodes.DWPoseModelLoader()
    one = image[:1]

    # 3. memory returned on unload (first, while the process holds little else)
    if 3 in parts:
        gc.collect()
        before = rss_mb()
        (model,) = loader.load(DET_FILE, POSE_FILE, "onnxruntime", "cpu", "fp32")
        following(model)
        estimator.estimate(one, DET_FILE, POSE_FILE, model=model)
        loaded = rss_mb()
        if management is not None:
            management.unload_all_models()
            how = f"comfy.model_management.unload_all_models() (ComfyUI {comfyui_version()})"
        else:
            model.detach(unpatch_all=True)
            how = "DWPoseModel.detach() (as ComfyUI's free_memory calls it; no ComfyUI here)"
        gc.collect()
        after = rss_mb()
        print(f"\n3. resident memory (VmRSS), one frame run, unloaded by {how}:")
        print(f"   before loading {before:7.0f} MB")
        print(f"   loaded and run {loaded:7.0f} MB")
        print(f"   after unload   {after:7.0f} MB  ({loaded - after:.0f} of the "
              f"{loaded - before:.0f} MB taken returned; model files {model.size / 2**20:.0f} MB)")  # fmt: skip

    (model,) = loader.load(DET_FILE, POSE_FILE, "onnxruntime", "cpu", "fp32")
    following(model)

    def node(**options):
        return estimator.estimate(image, DET_FILE, POSE_FILE, model=model, **options)

    # 1. video mode against per-frame
    if 1 in parts:
        modes = {
            "per-frame (detect_every 1)": {},
            "video mode (detect_every 8, smooth)": {"detect_every": 8, "smooth": True},
        }
        times: dict[str, list[float]] = {name: [] for name in modes}
        detections = {}
        for round_ in range(args.rounds):
            order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
            for name in order:
                result = {}
                times[name].append(timed(lambda: result.update(node(**modes[name]))))  # noqa: B023
                detections[name] = result["ui"]["text"][0]
        per_frame, video = (min(times[name]) for name in modes)
        print(
            f"\n1. {args.frames} frames {SIZE}x{SIZE}, one person, estimator node, best of {args.rounds}:"
        )
        for name in modes:
            best = min(times[name])
            print(
                f"   {name:38s} {best:7.2f} s  {1000 * best / args.frames:6.0f} ms/frame  ({detections[name]})"
            )
        print(f"   video mode is {per_frame / video:.2f}x faster")

    # 2. max_people changed on the loaded model: the node's time outside the model runs
    if 2 in parts:
        model.model.detector = Timed(model.model.detector)
        model.model.pose = Timed(model.model.pose)

        def overhead(max_people: int) -> float:
            inside = model.model.detector.seconds + model.model.pose.seconds
            took = timed(
                lambda: estimator.estimate(
                    one, DET_FILE, POSE_FILE, model=model, max_people=max_people
                )
            )
            return took - (model.model.detector.seconds + model.model.pose.seconds - inside)

        overhead(0)  # warm
        same = [overhead(0) for _ in range(args.option_runs)]
        changed = [overhead(k % 2) for k in range(1, args.option_runs + 1)]
        build = min(timed(lambda k=k: model.estimator(max_people=k % 2 or None)) for k in range(20))
        from comfyui_dwpose.estimator import load_models

        reload = timed(lambda: load_models(*model.files, "onnxruntime", "cpu"))
        print(f"\n2. one frame on the loaded model: the node's time outside the model runs, "
              f"median of {args.option_runs}:")  # fmt: skip
        print(f"   same options every run   {1000 * statistics.median(same):7.1f} ms")
        print(f"   max_people 0<->1 each run {1000 * statistics.median(changed):7.1f} ms")
        print(f"   building the run's estimator on the loaded models: {1e3 * build:.3f} ms")
        print(f"   reloading both models (what every change cost before): {reload:.2f} s")


class Timed:
    """A model that adds up the seconds spent in its runs."""

    def __init__(self, model):
        self.model, self.seconds = model, 0.0

    def run(self, batch):
        start = time.perf_counter()
        try:
            return self.model.run(batch)
        finally:
            self.seconds += time.perf_counter() - start

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def comfyui_version() -> str:
    path = Path(os.environ["COMFYUI_PATH"]) / "comfyui_version.py"
    text = path.read_text() if path.exists() else ""
    return text.rsplit("=", 1)[-1].strip().strip('"') or "version unknown"


if __name__ == "__main__":
    main()
