"""GPU check of the torch backend's precision against IEEE fp32, on two kinds of stand-in
weights, with the noise floor (IEEE fp32 on the GPU vs fp32 on the CPU) measured; memory
held and given back by release().

Run on a GPU machine from the repository root (not collected by pytest):
    OUT=out python tests/device/torch_gpu_precision.py   # DRY=1: a CPU rehearsal
"""

import copy
import gc
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
OUT = Path(os.environ.get("OUT", HERE / "out"))

import torch  # noqa: E402
from torch_gpu_check import DET, DEVICE, POSE, calibrate, det_compare, inputs, pose_compare  # noqa: E402

from comfyui_dwpose.nets.files import Net  # noqa: E402
from comfyui_dwpose.runtime_torch import TorchModel  # noqa: E402

LINES, RESULTS = [], {}


def say(text):
    print(text, flush=True)
    LINES.append(text)


def set_tf32(on: bool):
    if DEVICE != "cuda":
        return
    if hasattr(torch.backends.cudnn, "conv") and hasattr(
        torch.backends.cudnn.conv, "fp32_precision"
    ):
        torch.backends.cudnn.conv.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = on


def reference_style(model, seed):
    """Random weights as tests/data/openmmlab/README.md describes: BN statistics at random."""
    g = torch.Generator().manual_seed(seed)

    def draw(t, kind, a, b):
        x = torch.empty(t.shape)
        x = x.uniform_(a, b, generator=g) if kind == "u" else x.normal_(a, b, generator=g)
        t.copy_(x)

    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("bn.weight", "bn.running_var", ".g", "res_scale.scale")):
                draw(t, "u", 0.5, 1.5)
            elif name.endswith(("bn.bias", "bn.running_mean", "gau.beta")):
                draw(t, "n", 0.0, 0.1)
            elif name.endswith("gau.gamma"):
                draw(t, "n", 0.0, 1.0)
    return model.eval()


def run(module, config, precision, x, device=DEVICE):
    return TorchModel(Net(copy.deepcopy(module), config, Path(config.arch)), device, precision).run(
        x
    )


def evaluate(label, pose, det, pose_x, det_x):
    set_tf32(False)
    ref_p, ref_d = run(pose, POSE, "fp32", pose_x), run(det, DET, "fp32", det_x)
    cpu_p = run(pose, POSE, "fp32", pose_x[:8], "cpu")
    cpu_d = run(det, DET, "fp32", det_x[:2], "cpu")
    rows = {
        "noise floor: fp32 CPU": (
            pose_compare([r[:8] for r in ref_p], cpu_p),
            det_compare([ref_d[0][:2]], cpu_d),
        )
    }
    set_tf32(True)
    rows["fp32 with TF32 convs (torch default)"] = (
        pose_compare(ref_p, run(pose, POSE, "fp32", pose_x)),
        det_compare(ref_d, run(det, DET, "fp32", det_x)),
    )
    for prec in ("fp16", "bf16"):
        rows[prec] = (
            pose_compare(ref_p, run(pose, POSE, prec, pose_x)),
            det_compare(ref_d, run(det, DET, prec, det_x)),
        )
    m = copy.deepcopy(pose).to(DEVICE).half()
    with torch.inference_mode():
        hx, hy = m(torch.from_numpy(pose_x).to(DEVICE).half())
    rows["fp16, RTMCC head too"] = (
        pose_compare(ref_p, [hx.float().cpu().numpy(), hy.float().cpu().numpy()]),
        None,
    )
    RESULTS[label] = {k: {"pose": p, "det": d} for k, (p, d) in rows.items()}
    say(f"## {label} (reference: IEEE fp32 on {DEVICE})")
    say(
        "| vs IEEE fp32 | argmax same % | same % (clear peaks) | kp moved % | max px | score err (rel) | logit err (rel) | det box raw max | det person score max |"
    )
    for k, (p, d) in rows.items():
        dd = f"{d['box_raw_err_max']:.2e} | {d['person_score_err_max']:.2e}" if d else "- | -"
        say(
            f"| {k} | {p['argmax_agree_pct']:.2f} | {p['argmax_agree_clear_pct']:.2f} | {p['kp_moved_pct']:.2f} | "
            f"{p['kp_err_px_max']:.1f} | {p['score_err_max_rel']:.1e} | {p['logit_err_max_rel']:.1e} | {dd} |"
        )


def release(pose, pose_x):
    gc.collect()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    m = TorchModel(Net(copy.deepcopy(pose), POSE, Path("p")), DEVICE, "fp16")
    m.run(pose_x[:8])
    held = torch.cuda.memory_allocated() - base
    m.release()
    gc.collect()
    after = torch.cuda.memory_allocated() - base
    again = m.run(pose_x[:2])[0].shape
    RESULTS["release"] = {
        "held_MiB": held / 2**20,
        "after_release_MiB": after / 2**20,
        "runs_again": list(again),
    }
    say(f"release: {json.dumps(RESULTS['release'])}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pose_x, det_x = inputs()
    if DEVICE == "cpu":  # rehearsal: half precision is slow on CPUs
        pose_x, det_x = pose_x[:4], det_x[:2]
    torch.manual_seed(0)
    pose, det = POSE.build(), DET.build()
    evaluate(
        "reference-style random weights (as tests/data/openmmlab)",
        reference_style(copy.deepcopy(pose), 0),
        reference_style(copy.deepcopy(det), 1),
        pose_x,
        det_x,
    )
    pose = calibrate(
        pose.to(DEVICE), [torch.from_numpy(b).to(DEVICE) for b in (pose_x[:16], pose_x[16:])], 0
    ).cpu()
    det = calibrate(
        det.to(DEVICE), [torch.from_numpy(b).to(DEVICE) for b in (det_x[:4], det_x[4:])], 1
    ).cpu()
    evaluate("BatchNorm calibrated on image crops (first run's weights)", pose, det, pose_x, det_x)
    if DEVICE == "cuda":
        release(pose, pose_x)
    (OUT / "gpu_check2.json").write_text(json.dumps(RESULTS, indent=1))
    (OUT / "gpu_check2.txt").write_text("\n".join(LINES) + "\n")
    say(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
