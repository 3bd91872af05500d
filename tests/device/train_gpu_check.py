"""GPU check of the trainer: the released l -> t stage 1 at 256x192 on CUDA, per precision.

Run on a GPU machine from the repository root (not collected by pytest):
    OUT=out python tests/device/train_gpu_check.py        # DRY=1: a CPU rehearsal, tiny
Seeded stand-in teacher (no real weights), the COCO-WholeBody sample repeated as data.
Reports seconds per iteration and the first iterations' losses for fp32, bf16 and fp16
(fp16 with the gradient scaler); the losses of one precision against fp32 show what
autocast changes. Writes OUT/train_gpu_check.json.
"""

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
OUT = Path(os.environ.get("OUT", HERE / "out"))
DRY = os.environ.get("DRY") == "1"

import torch  # noqa: E402

from comfyui_dwpose.nets import build_model  # noqa: E402
from comfyui_dwpose.train.annotations import load_coco_wholebody  # noqa: E402
from comfyui_dwpose.train.data import training_set  # noqa: E402
from comfyui_dwpose.train.loop import train  # noqa: E402
from comfyui_dwpose.train.presets import preset  # noqa: E402


class Repeated:
    def __init__(self, dataset, times: int) -> None:
        self.dataset, self.times = dataset, times

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, index: int) -> dict:
        return self.dataset[index % len(self.dataset)]

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def main() -> None:
    size = (64, 64) if DRY else (256, 192)
    teacher_arch = "rtmpose-t" if DRY else "rtmpose-l"
    batch = 4 if DRY else 64
    iterations = 3 if DRY else 20
    device = "cpu" if DRY else "cuda"
    data = ROOT / "tests" / "data" / "coco"
    records = load_coco_wholebody(data / "test_coco_wholebody.json", data)
    torch.manual_seed(1)
    teacher = build_model(teacher_arch, size).state_dict()
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    precisions = ("fp32", "bf16") if DRY else ("fp32", "bf16", "fp16")
    for precision in precisions:
        config = preset("l-t-256", 1).replace(
            teacher=teacher_arch, input_size=size, batch_size=batch, precision=precision, workers=4
        )
        dataset = Repeated(training_set(records, config), 64)  # augmented
        out = OUT / f"train_{precision}"
        started = time.perf_counter()
        train(config, dataset, out, teacher, iterations=iterations, log_every=1, device=device)
        elapsed = time.perf_counter() - started
        log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        report[precision] = {
            "seconds_per_iteration_after_the_first": (log[-1]["time"] - log[0]["time"])
            / (len(log) - 1),
            "total_seconds": elapsed,
            "losses": [
                {k: r[k] for k in ("loss", "loss_kpt", "loss_fea", "loss_logit")} for r in log[:5]
            ],
        }
        print(precision, report[precision]["seconds_per_iteration_after_the_first"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "train_gpu_check.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
