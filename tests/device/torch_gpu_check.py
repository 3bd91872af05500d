"""GPU check of the torch backend: precision, timings, release, full-size ONNX conversions.

Run on a GPU machine from the repository root (not collected by pytest):
    OUT=out python tests/device/torch_gpu_check.py      # DRY=1: a CPU rehearsal, small models
Images: $DWPOSE_IMAGES (default tests/data/coco). Stand-in weights:
seeded, BatchNorm calibrated on image crops. Such nets amplify any rounding (see
torch_gpu_precision.py, which measures that), so read the precision section with it.
"""

import copy
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
OUT = Path(os.environ.get("OUT", HERE / "out"))
IMAGES = Path(os.environ.get("DWPOSE_IMAGES", ROOT / "tests" / "data" / "coco"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from comfyui_dwpose.detect import letterbox  # noqa: E402
from comfyui_dwpose.images import load_image  # noqa: E402
from comfyui_dwpose.nets import NetConfig, export_onnx, load_net  # noqa: E402
from comfyui_dwpose.nets.files import Net  # noqa: E402
from comfyui_dwpose.pose import box_center_scale, crop, normalize  # noqa: E402
from comfyui_dwpose.runtime_torch import TorchModel  # noqa: E402

RESULTS = {}
LINES = []
DRY = os.environ.get("DRY") == "1"  # a CPU rehearsal with small models
DEVICE = "cpu" if DRY else "cuda"
POSE = NetConfig("rtmpose-t", (256, 192)) if DRY else NetConfig("rtmpose-l", (384, 288))
DET = NetConfig("yolox-nano", (640, 640)) if DRY else NetConfig("yolox-l", (640, 640))
ITERS = 1 if DRY else 20


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def say(text=""):
    print(text, flush=True)
    LINES.append(text)


def section(name):
    def wrap(fn):
        def run(*a, **k):
            t = time.time()
            say(f"== {name}")
            try:
                return fn(*a, **k)
            except Exception:
                say(traceback.format_exc())
            finally:
                say(f"   ({time.time() - t:.1f} s)")

        return run

    return wrap


def calibrate(model, batches, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            with torch.no_grad():
                m.weight.copy_(torch.empty(m.weight.shape).uniform_(0.5, 1.5, generator=g))
                m.bias.copy_(torch.empty(m.bias.shape).normal_(0, 0.2, generator=g))
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)
    return model.eval()


def inputs():
    rng = np.random.default_rng(0)
    images = [load_image(p) for p in sorted(IMAGES.glob("*.jpg"))]
    crops = []
    for i in range(32):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        x1, y1 = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
        x2, y2 = x1 + rng.uniform(0.2, 0.5) * w, y1 + rng.uniform(0.3, 0.5) * h
        c, s = box_center_scale(np.array([[x1, y1, x2, y2]]), POSE.input_size)
        crops.append(crop(img, c[0], s[0], POSE.input_size))
    pose_x = normalize(np.stack(crops))
    dets = []
    for i in range(8):
        canvas, _ = letterbox(images[i % len(images)], (640, 640))
        dets.append(canvas[:, :, ::-1].transpose(2, 0, 1))
    det_x = np.stack(dets).astype(np.float32)
    return pose_x, det_x


def build(pose_x, det_x):
    torch.manual_seed(0)
    pose = POSE.build().to(DEVICE)
    pose = calibrate(pose, [torch.from_numpy(b).to(DEVICE) for b in (pose_x[:16], pose_x[16:])], 0)
    det = DET.build().to(DEVICE)
    det = calibrate(det, [torch.from_numpy(b).to(DEVICE) for b in (det_x[:4], det_x[4:])], 1)
    return pose.cpu(), det.cpu()


def torch_model(module, config, name, precision):
    return TorchModel(Net(copy.deepcopy(module), config, Path(name)), DEVICE, precision)


def pose_compare(ref, got):
    (rx, ry), (gx, gy) = ref, got
    ax = rx.argmax(2) == gx.argmax(2)
    ay = ry.argmax(2) == gy.argmax(2)
    dx = np.abs(rx.argmax(2) - gx.argmax(2)) / 2.0
    dy = np.abs(ry.argmax(2) - gy.argmax(2)) / 2.0
    px = np.hypot(dx, dy)
    rs, gs = np.minimum(rx.max(2), ry.max(2)), np.minimum(gx.max(2), gy.max(2))
    # Keypoints whose fp32 peak stands out (top-1 above top-2 by 1% of its size): trained
    # models peak sharply, these seeded ones often tie, and ties flip under any rounding.
    clear = [
        np.diff(np.sort(r, axis=2)[..., -2:], axis=2)[..., 0] > 0.01 * np.abs(r.max(2))
        for r in (rx, ry)
    ]
    return {
        "argmax_agree_pct": float(100 * np.concatenate([ax, ay]).mean()),
        "clear_peaks_pct": float(100 * np.concatenate(clear).mean()),
        "argmax_agree_clear_pct": float(100 * np.concatenate([ax[clear[0]], ay[clear[1]]]).mean()),
        "kp_err_px_max": float(px.max()),
        "kp_err_px_mean": float(px.mean()),
        "kp_moved_pct": float(100 * (px > 0).mean()),
        "score_err_max_rel": float(np.abs(gs - rs).max() / np.abs(rs).max()),
        "logit_err_max_rel": float(
            max(np.abs(g - r).max() / np.abs(r).max() for g, r in zip(got, ref))
        ),
        "finite": bool(all(np.isfinite(g).all() for g in got)),
    }


def det_compare(ref, got):
    r, g = ref[0], got[0]
    rs, gs = r[..., 4] * r[..., 5], g[..., 4] * g[..., 5]
    return {
        "box_raw_err_max": float(np.abs(g[..., :4] - r[..., :4]).max()),
        "person_score_err_max": float(np.abs(gs - rs).max()),
        "person_score_range": [float(rs.min()), float(rs.max())],
        "finite": bool(np.isfinite(g).all()),
    }


def timeit(model, x, iters):
    for _ in range(3):
        model.run(x)
    sync()
    t = time.perf_counter()
    for _ in range(iters):
        model.run(x)
    sync()
    return (time.perf_counter() - t) / iters * 1000


@section("environment")
def environment():
    import onnxruntime as ort

    RESULTS["env"] = {
        "gpu": "none (dry run)" if DRY else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cpus": os.cpu_count(),
    }
    say(json.dumps(RESULTS["env"]))


@section(
    "precision: fp16/bf16 vs fp32 on the GPU (RTMPose-l 384x288, 32 crops; YOLOX-l 640, 8 images)"
)
def precision(pose, det, pose_x, det_x):
    pc, dc = POSE, DET
    ref_p = torch_model(pose, pc, "rtmpose-l", "fp32").run(pose_x)
    ref_d = torch_model(det, dc, "yolox-l", "fp32").run(det_x)
    RESULTS["precision"] = {}
    for prec in ("fp16", "bf16"):
        p = pose_compare(ref_p, torch_model(pose, pc, "rtmpose-l", prec).run(pose_x))
        d = det_compare(ref_d, torch_model(det, dc, "yolox-l", prec).run(det_x))
        RESULTS["precision"][prec] = {"pose": p, "det": d}
        say(f"{prec} pose: {json.dumps(p)}")
        say(f"{prec} det:  {json.dumps(d)}")
    # The whole RTMPose in fp16, head included (not what TorchModel does): does the GAU overflow?
    m = copy.deepcopy(pose).to(DEVICE).half()
    with torch.inference_mode():
        hx, hy = m(torch.from_numpy(pose_x).to(DEVICE).half())
    full = pose_compare(ref_p, [hx.float().cpu().numpy(), hy.float().cpu().numpy()])
    RESULTS["precision"]["fp16_head_too"] = full
    say(f"fp16 incl. head: {json.dumps(full)}")
    # GPU fp32 against CPU fp32 (TF32 is off by default for convs? report)
    cpu = TorchModel(Net(copy.deepcopy(pose), pc, Path("p")), "cpu", "fp32").run(pose_x[:8])
    e = max(float(np.abs(a[:8] - b).max() / np.abs(b).max()) for a, b in zip(ref_p, cpu))
    RESULTS["gpu_fp32_vs_cpu_fp32_pose_rel"] = e
    say(f"pose fp32 GPU vs CPU: rel {e:.2e}; cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}")


@section("timing: TorchModel.run (numpy in, numpy out), ms per call")
def timing(pose, det, pose_x, det_x):
    pc, dc = POSE, DET
    rows = {}
    for prec in ("fp32", "fp16", "bf16"):
        pm = torch_model(pose, pc, "rtmpose-l", prec)
        dm = torch_model(det, dc, "yolox-l", prec)
        for b in (1, 8, 32):
            rows[f"pose b{b} {prec}"] = timeit(pm, pose_x[:b], ITERS)
        for b in (1, 8):
            rows[f"det b{b} {prec}"] = timeit(dm, det_x[:b], max(1, ITERS // 2))
        del pm, dm
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    RESULTS["timing_ms"] = rows
    say("| model, batch | fp32 ms | fp16 ms | bf16 ms | fp16 per item ms |")
    for key in ("pose b1", "pose b8", "pose b32", "det b1", "det b8"):
        b = int(key.split("b")[1])
        vals = [rows[f"{key} {p}"] for p in ("fp32", "fp16", "bf16")]
        say(f"| {key} | {vals[0]:.2f} | {vals[1]:.2f} | {vals[2]:.2f} | {vals[1] / b:.3f} |")


@section("release: GPU memory before and after TorchModel.release()")
def release(pose, pose_x):
    if DRY:
        return
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    m = torch_model(pose, POSE, "rtmpose-l", "fp16")
    m.run(pose_x[:8])
    held = torch.cuda.memory_allocated() - base
    m.release()
    after = torch.cuda.memory_allocated() - base
    again = m.run(pose_x[:2])[0].shape
    RESULTS["release"] = {
        "held_MiB": held / 2**20,
        "after_release_MiB": after / 2**20,
        "runs_again": list(again),
    }
    say(json.dumps(RESULTS["release"]))


@section(
    "ONNX -> torch at full size: export, convert by structure, verify against onnxruntime (CPU)"
)
def conversions(pose, det, pose_x, det_x):
    RESULTS["conversion"] = {}
    for module, name, x, dyn in (
        (pose, POSE.arch, pose_x[:4], True),
        (det, DET.arch, det_x[:1], False),
    ):
        t = time.time()
        path = export_onnx(module, HERE / f"{name}.onnx", dynamic_batch=dyn)
        te = time.time() - t
        t = time.time()
        net = load_net(path)
        tc = time.time() - t
        # torch GPU fp32 and fp16 (converted net) vs onnxruntime CPU on real inputs
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {sess.get_inputs()[0].name: x})
        got32 = TorchModel(net, DEVICE, "fp32").run(x)
        e32 = max(float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(got32, ref))
        row = {
            "config": str(net.config),
            "verify_rel_err": net.onnx_error,
            "export_s": te,
            "convert_verify_s": tc,
            "torch_gpu_fp32_vs_ort_cpu_rel": e32,
        }
        if name.startswith("rtm"):
            net16 = load_net(path)
            row["torch_gpu_fp16_vs_ort_cpu"] = pose_compare(
                ref, TorchModel(net16, DEVICE, "fp16").run(x)
            )
        RESULTS["conversion"][name] = row
        say(f"{name}: {json.dumps(row)}")
        path.unlink()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    environment()
    pose_x, det_x = inputs()
    pose, det = build(pose_x, det_x)
    say(f"built and calibrated in {time.time() - t0:.1f} s")
    precision(pose, det, pose_x, det_x)
    timing(pose, det, pose_x, det_x)
    release(pose, pose_x)
    conversions(pose, det, pose_x, det_x)
    (OUT / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1))
    (OUT / "gpu_check.txt").write_text("\n".join(LINES) + "\n")
    say(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
