"""GPU check of the ComfyUI path: the estimator node on ComfyUI's CUDA device, out of the box.

Run on a GPU machine from the repository root (not collected by pytest):
    OUT=out python tests/device/comfyui_gpu_check.py    # DRY=1: a CPU rehearsal, small models
It loads the pack as ComfyUI does, with ComfyUI's device (a stand-in comfy.model_management
that answers cuda), puts seeded official-architecture .onnx files in the models folder,
and runs the estimator node in two fresh processes: the first converts each model for
torch and keeps it beside the file, the second must read the kept weights (no conversion).
Expected: both models are TorchModels on cuda (float16), no warnings on the node, the
second load much faster than the first, and CUDA memory back to its level before loading
once the model is unloaded as ComfyUI unloads it (cuda_allocated_mb: before, loaded,
after). Writes $OUT/comfyui_gpu_check.json.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = Path(os.environ.get("OUT", HERE / "out"))
DRY = os.environ.get("DRY") == "1"

RUN = """
import gc, importlib.util, json, sys, time, types
import numpy as np, torch
from PIL import Image
device = {device!r}
comfy = types.ModuleType("comfy.model_management")
comfy.get_torch_device = lambda: torch.device(device)
comfy.throw_exception_if_processing_interrupted = lambda: None
comfy.load_models_gpu = lambda models: [m.partially_load(m.load_device, 1e32) for m in models]
sys.modules["comfy.model_management"] = comfy
spec = importlib.util.spec_from_file_location("dwpose_pack", {init!r})
pack = importlib.util.module_from_spec(spec)
sys.modules["dwpose_pack"] = pack
spec.loader.exec_module(pack)
nodes = sys.modules["dwpose_pack.nodes"]
if device == "cpu":  # the rehearsal: take the GPU path (torch backend) on the CPU
    sys.modules["dwpose_pack.comfyui_dwpose.runtime"]._torch_has_gpu = lambda device: True
image = torch.from_numpy(np.asarray(Image.open({image!r}).convert("RGB"), np.float32) / 255)[None]
def allocated():
    return torch.cuda.memory_allocated() if device == "cuda" else 0
before = allocated()
start = time.perf_counter()
model = nodes.get_model("det.onnx", "pose.onnx")
model.load()
load = time.perf_counter() - start
out = nodes.DWPoseEstimator().estimate(image, "det.onnx", "pose.onnx")
loaded = allocated()
result = {{
    "load_s": round(load, 2),
    "detector": repr(model.model.detector),
    "pose_model": repr(model.model.pose),
    "warnings": model.warnings,
    "node_returns": sorted(out),
}}
model.detach()  # as ComfyUI's free_memory ("Unload models") calls it
gc.collect()
result["cuda_allocated_mb"] = [round(x / 2**20, 1) for x in (before, loaded, allocated())]
print(json.dumps(result))
"""


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from comfyui_dwpose.nets import build_model, export_onnx

    OUT.mkdir(parents=True, exist_ok=True)
    models = Path(tempfile.mkdtemp(prefix="dwpose_models_"))
    torch.manual_seed(0)
    det, pose = ("yolox-nano", "rtmpose-t") if DRY else ("yolox-l", "rtmpose-l")
    pose_size = (256, 192) if DRY else (384, 288)
    export_onnx(build_model(det, (640, 640)).eval(), models / "det.onnx", dynamic_batch=False)
    export_onnx(build_model(pose, pose_size).eval(), models / "pose.onnx")
    code = RUN.format(
        device="cpu" if DRY else "cuda",
        init=str(ROOT / "__init__.py"),
        image=str(ROOT / "assets" / "skier.jpg"),
    )
    env = {**os.environ, "DWPOSE_MODELS_DIR": str(models), "HF_HUB_OFFLINE": "1"}
    runs = []
    for label in ("first start (converts)", "restart (reads the kept weights)"):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT
        )
        if done.returncode != 0:
            raise SystemExit(f"{label} failed:\n{done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_s"] = round(time.perf_counter() - start, 2)
        runs.append({"run": label, **result})
        print(json.dumps(runs[-1]))
    kept = sorted(p.name for p in models.iterdir() if p.name.endswith(".torch.safetensors"))
    report = {"dry": DRY, "torch": torch.__version__, "runs": runs, "kept": kept}
    (OUT / "comfyui_gpu_check.json").write_text(json.dumps(report, indent=1))
    print("kept:", kept)


if __name__ == "__main__":
    main()
