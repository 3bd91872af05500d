"""Training-data throughput: samples/s of the top-down loader (decode, augment, warp, collate)
by number of DataLoader workers, and where one sample's time goes.

Real format: the four COCO photos of tests/data/coco (640x333-640x429 JPEG), their 12
COCO-WholeBody people repeated to --samples, RTMPose's COCO-WholeBody training pipeline,
256x192 crops, batches of 32. Synthetic: --synthetic images of the synthetic set (128x128
PNG) generated first (timed), then loaded at 128x96. Each loader row is one whole epoch,
worker start-up included (workers are not persistent, see comfyui_dwpose/train/data.py).
The load average is printed: on a shared machine the wall-clock numbers move with it.

Run:  python bench/train_data.py [--samples 1200] [--synthetic 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import machine_line  # noqa: E402

from comfyui_dwpose.train import (  # noqa: E402
    AUGMENT_PRESETS,
    TopDownDataset,
    concat,
    load_coco_wholebody,
    make_loader,
    synthetic,
)
from comfyui_dwpose.train.augment import photometric, plan_crop, warp  # noqa: E402
from comfyui_dwpose.train.data import read_image  # noqa: E402

COCO = ROOT / "tests" / "data" / "coco"


def epoch_rate(dataset: TopDownDataset, workers: int, batch: int = 32) -> tuple[float, float]:
    """(samples/s wall, CPU seconds of this process per sample) over one epoch."""
    dataset.set_epoch(workers)  # a fresh epoch each time: nothing cached
    wall, cpu = time.perf_counter(), time.process_time()
    n = sum(len(b["image"]) for b in make_loader(dataset, batch, num_workers=workers))
    return n / (time.perf_counter() - wall), (time.process_time() - cpu) / n


def stage_times(dataset: TopDownDataset, count: int) -> dict[str, float]:
    """CPU milliseconds per sample of each step, in this process."""
    r, augment = dataset.records, dataset.current_augment()
    totals = dict.fromkeys(("decode", "plan", "warp", "photometric"), 0.0)
    for index in range(count):
        row = r.image_index[index]
        t = time.process_time()
        image = read_image(r.image_paths[row])
        totals["decode"] += time.process_time() - t
        rng = np.random.default_rng([0, 0, index])
        t = time.process_time()
        crop, _, _ = plan_crop(
            r.boxes[index],
            r.keypoints[index],
            r.visible[index],
            int(r.image_sizes[row][0]),
            dataset.input_size,
            augment,
            rng,
        )
        totals["plan"] += time.process_time() - t
        t = time.process_time()
        out = cv2.cvtColor(warp(image, crop.matrix, dataset.input_size), cv2.COLOR_BGR2RGB)
        totals["warp"] += time.process_time() - t
        t = time.process_time()
        photometric(out, augment, rng)
        totals["photometric"] += time.process_time() - t
    return {k: 1000 * v / count for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--synthetic", type=int, default=400)
    args = parser.parse_args()
    cv2.setNumThreads(0)  # as make_loader does: the same OpenCV setting in every row
    main_aug, _ = AUGMENT_PRESETS["coco-wholebody"]
    people = load_coco_wholebody(COCO / "test_coco_wholebody.json", COCO)
    coco = TopDownDataset(concat([people] * -(-args.samples // len(people))), (256, 192), main_aug)
    print(machine_line(opencv=cv2.__version__))
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(
        "\n| data | input | workers | samples/s | main-process CPU ms/sample |\n|---|---|---|---|---|"
    )
    for workers in (0, 1, 2):
        rate, cpu = epoch_rate(coco, workers)
        print(
            f"| COCO photos, {len(coco)} samples | 256x192 | {workers} | {rate:.0f} | {1000 * cpu:.2f} |"
        )
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        ann = synthetic.write_split(tmp, "train", args.synthetic, seed=0, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        records = load_coco_wholebody(ann, Path(tmp) / "images" / "train")
        syn = TopDownDataset(records, (128, 96), main_aug)
        for workers in (0, 2):
            rate, cpu_s = epoch_rate(syn, workers)
            print(
                f"| synthetic, {len(syn)} people | 128x96 | {workers} | {rate:.0f} | {1000 * cpu_s:.2f} |"
            )
    print(
        f"\nsynthetic set: {args.synthetic} images 128x128 ({len(records)} trainable people) in {wall:.1f} s wall, {cpu:.1f} s CPU ({args.synthetic / cpu:.0f} images per CPU second)"
    )
    stages = stage_times(coco, min(240, len(coco)))
    print(
        "one COCO sample at 256x192, CPU ms: "
        + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
