"""DWPose's claim in miniature, on the CPU: does distillation make a better small model?

On the project's synthetic whole-body set (comfyui_dwpose.train.synthetic, 133 known
keypoints), at a small input size:
- teacher: RTMPose-s trained on the labels alone (longer than the students), once, with
  the first seed, and shared by every seed's students (a teacher per seed does not fit
  the 20-minute budget);
- student alone: RTMPose-t trained on the labels alone;
- + stage 1: RTMPose-t trained by `dwpose train stage1`'s code from the teacher;
- + stage 2: that model's head re-trained on its own frozen features (`stage2`);
with the released teacher mode (teacher BatchNorm in train mode) and `frozen_teacher=True`,
over several seeds (each seed: its own student initialisation, data order and
augmentation). Every model is evaluated like `dwpose eval --model ... --rescore`: flip test,
ground-truth boxes of the held-out val split, xtcocotools' COCO-WholeBody AP per part; and,
since AP is 0 until keypoints land within a few pixels, by the mean distance of the
predicted visible keypoints from the truth over the person's size (sqrt of the box area),
beside the same distance for the training set's mean pose placed in each box.

The jobs run in --jobs single-threaded processes (torch and OpenCV on one thread each, data
loaded in the training process), so the experiment's CPU time (user + sys of the whole
process tree) is what it costs, and the 2-core wall time it implies is the makespan of
scheduling the measured jobs on 2 processes. Prints the table and writes results.json.

Run:  python bench/distill_miniature.py [--out bench/.cache/distill_miniature] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import CACHE, machine_line  # noqa: E402

PARTS = ("wholebody", "body", "foot", "face", "lefthand", "righthand")
ROWS = (
    ("teacher", "teacher (RTMPose-s, labels only)"),
    ("student", "student alone (RTMPose-t)"),
    ("s1", "student + stage 1"),
    ("s2", "student + stage 1 + stage 2"),
)


@dataclass
class Job:
    name: str  # e.g. "s1-released-seed0"
    kind: str  # teacher, student, s1, s2
    seed: int
    mode: str = ""  # released or frozen (s1, s2)
    needs: list[str] = field(default_factory=list)


def jobs(seeds: list[int]) -> list[Job]:
    teacher = f"teacher-seed{seeds[0]}"
    out = [Job(teacher, "teacher", seeds[0])]
    for seed in seeds:
        student = f"student-seed{seed}"
        out.append(Job(student, "student", seed))
        for mode in ("released", "frozen"):
            s1 = f"s1-{mode}-seed{seed}"
            out.append(Job(s1, "s1", seed, mode, [teacher]))
            out.append(Job(f"s2-{mode}-seed{seed}", "s2", seed, mode, [s1]))
    return out


def settings(args: argparse.Namespace) -> dict:
    return {
        "images": args.images,
        "val_images": args.val_images,
        "image_size": args.image_size,
        "input_size": list(args.input_size),
        "sigma": list(args.sigma),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "epochs": args.epochs,
        "teacher_epochs": args.teacher_epochs,
        "stage2_epochs": args.stage2_epochs,
        "warmup_iters": args.warmup_iters,
        "augment": args.augment,
        "teacher_arch": args.teacher_arch,
        "student_arch": args.student_arch,
    }


def make_data(out: Path, s: dict) -> None:
    """Write the synthetic train and val splits (skipped when they exist for these settings)."""
    from comfyui_dwpose.train.synthetic import write_split

    size = (s["image_size"], s["image_size"])
    for split, count in (("train", s["images"]), ("val", s["val_images"])):
        done = out / "annotations" / f"{split}.json"
        stamp = out / f".{split}.settings"
        wanted = json.dumps([count, size])
        if done.exists() and stamp.exists() and stamp.read_text() == wanted:
            continue
        write_split(out, split, count, seed=0, size=size, progress=False)
        stamp.write_text(wanted)


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_job(job: Job, out: str, s: dict) -> dict:
    """Train and evaluate one model in this (single-threaded) process."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from safetensors.torch import load_file

    from comfyui_dwpose.nets import load_net
    from comfyui_dwpose.train.annotations import load_coco_wholebody
    from comfyui_dwpose.train.coco_eval import evaluate
    from comfyui_dwpose.train.data import TopDownDataset, training_set
    from comfyui_dwpose.train.loop import train
    from comfyui_dwpose.train.predict import predict
    from comfyui_dwpose.train.presets import preset

    started, wall = _cpu_self(), time.perf_counter()
    out = Path(out)
    data, runs = out / "data", out / "runs"
    size = tuple(s["input_size"])
    epochs = {"teacher": s["teacher_epochs"], "s2": s["stage2_epochs"]}.get(job.kind, s["epochs"])
    base = preset("t-tt-256", 2) if job.kind == "s2" else preset("l-t-256", 1)
    config = base.replace(
        teacher={
            "teacher": None,
            "student": None,
            "s1": s["teacher_arch"],
            "s2": s["student_arch"],
        }[job.kind],
        student=s["teacher_arch"] if job.kind == "teacher" else s["student_arch"],
        input_size=size,
        sigma=tuple(s["sigma"]),
        epochs=epochs,
        # Stage 1 and training alone: cosine over the second half, the milder augmentation in
        # the last ninth (30 of 270 epochs). Stage 2 (60 of the released schedule's 270
        # epochs) ends before either: constant rate, the main augmentation throughout.
        cosine_begin=epochs if job.kind == "s2" else epochs // 2,
        cosine_end=epochs,
        mild_from=epochs if job.kind == "s2" else epochs - max(1, round(epochs / 9)),
        batch_size=s["batch_size"],
        lr=s["lr"],
        lr_batch=s["batch_size"],
        kpt_loss_batch=s["batch_size"],
        warmup_iters=s["warmup_iters"],
        augment=s["augment"],
        frozen_teacher=job.mode == "frozen",
        seed=job.seed,
        workers=0,
    )
    records = load_coco_wholebody(data / "annotations/train.json", data / "images/train")
    teacher = None
    if job.needs:
        teacher = load_file(runs / job.needs[0] / "model.safetensors")
    result = train(
        config,
        training_set(records, config),
        runs / job.name,
        teacher,
        checkpoint_every=10**9,
        log_every=50,
        progress=False,
    )
    trained = _cpu_self()
    net = load_net(result.model)
    val = TopDownDataset(
        load_coco_wholebody(data / "annotations/val.json", data / "images/val"), size
    )
    predictions = predict(net.module, val, size, flip_test=True, progress=False)
    with contextlib.redirect_stdout(io.StringIO()):  # xtcocotools narrates
        metrics = evaluate(data / "annotations/val.json", predictions, rescore=True)
    log = [json.loads(x) for x in (runs / job.name / "metrics.jsonl").read_text().splitlines()]
    return {
        "job": job.name,
        "iterations": result.iterations,
        "AP": {part: metrics[part]["AP"] for part in PARTS},
        "error": keypoint_error(data / "annotations/val.json", predictions, val.records.ids),
        "AR_wholebody": metrics["wholebody"]["AR"],
        "last_losses": {k: v for k, v in log[-1].items() if k.startswith("loss")},
        "cpu_train_s": trained - started,
        "cpu_s": _cpu_self() - started,
        "wall_s": time.perf_counter() - wall,
    }


KEYPOINT_FIELDS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


def _points(entry: dict):
    import numpy as np

    return np.concatenate([np.reshape(entry[k], (-1, 3)) for k in KEYPOINT_FIELDS])


def keypoint_error(annotations: Path, predictions: list[dict], ids) -> float:
    """Mean distance of the predicted visible keypoints from the truth, over sqrt(box area);
    ``predictions[i]`` is the person of annotation ``ids[i]``."""
    import numpy as np

    truth = {a["id"]: a for a in json.loads(annotations.read_text())["annotations"]}
    errors = []
    for p, i in zip(predictions, ids, strict=True):
        a = truth[int(i)]
        seen = _points(a)[:, 2] > 0
        size = np.sqrt(a["bbox"][2] * a["bbox"][3])
        errors.append(np.linalg.norm(_points(p)[seen, :2] - _points(a)[seen, :2], axis=1) / size)
    return float(np.concatenate(errors).mean())


def mean_pose_error(data: Path) -> float:
    """`keypoint_error` of the training set's mean pose (in box units) put in each val box."""
    import numpy as np

    def normalised(a):
        x, y, w, h = a["bbox"]
        points = _points(a)
        return (points[:, :2] - [x, y]) / [w, h], points[:, 2] > 0

    train = json.loads((data / "annotations/train.json").read_text())["annotations"]
    sums, counts = np.zeros((133, 2)), np.zeros((133, 1))
    for a in train:
        points, seen = normalised(a)
        sums[seen] += points[seen]
        counts[seen] += 1
    mean = sums / np.maximum(counts, 1)
    errors = []
    for a in json.loads((data / "annotations/val.json").read_text())["annotations"]:
        points, seen = normalised(a)
        w, h = a["bbox"][2:]
        distance = np.linalg.norm((mean[seen] - points[seen]) * [w, h], axis=1)
        errors.append(distance / np.sqrt(w * h))
    return float(np.concatenate(errors).mean())


def run_all(out: Path, todo: list[Job], s: dict, processes: int) -> dict[str, dict]:
    """Run the jobs on `processes` workers as their inputs become ready."""
    results: dict[str, dict] = {}
    saved = out / "jobs.json"
    if saved.exists():  # finished jobs of an interrupted run with the same settings
        previous = json.loads(saved.read_text())
        if previous.get("settings") == s:
            results = previous["results"]
    pending = [j for j in todo if j.name not in results]
    running = {}
    context = get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        while pending or running:
            for job in [j for j in pending if all(n in results for n in j.needs)]:
                if len(running) >= processes:
                    break
                running[pool.submit(run_job, job, str(out), s)] = job
                pending.remove(job)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                results[job.name] = future.result()
                r = results[job.name]
                print(
                    f"{job.name:<22} wholebody AP {r['AP']['wholebody']:.3f}  body "
                    f"{r['AP']['body']:.3f}  ({r['iterations']} it, {r['cpu_s']:.0f} CPU s)",
                    flush=True,
                )
                saved.write_text(json.dumps({"settings": s, "results": results}, indent=1))
    return results


def makespan(todo: list[Job], seconds: dict[str, float], processes: int) -> float:
    """The wall time of running the jobs on `processes` idle cores in the order run_all
    takes them, each job taking its measured CPU time."""
    finish: dict[str, float] = {}
    free = [0.0] * processes
    pending = list(todo)
    while pending:
        ready = [j for j in pending if all(n in finish for n in j.needs)]
        job = min(ready, key=lambda j: max([0.0, *(finish[n] for n in j.needs)]))
        slot = min(range(processes), key=lambda i: free[i])
        start = max([free[slot], *(finish[n] for n in job.needs)])
        finish[job.name] = free[slot] = start + seconds[job.name]
        pending.remove(job)
    return max(free)


def table(results: dict[str, dict], seeds: list[int]) -> tuple[str, dict]:
    """Markdown table: AP per part, mean +- sample std over seeds (min-max in the JSON)."""
    summary = {}
    lines = [
        "| model | teacher mode | "
        + " | ".join(f"{p} AP" for p in PARTS)
        + " | keypoint error (÷ size) |",
        "|---|---|" + "---|" * (len(PARTS) + 1),
    ]
    for kind, label in ROWS:
        modes = ("released", "frozen") if kind in ("s1", "s2") else ("",)
        for mode in modes:
            names = [f"{kind}-{mode}-seed{s}" if mode else f"{kind}-seed{s}" for s in seeds]
            if kind == "teacher":
                names = names[:1]
            cells, stats = [], {}
            for part in PARTS:
                values = [results[n]["AP"][part] for n in names]
                mean = statistics.fmean(values)
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                stats[part] = {"mean": mean, "std": std, "values": values}
                cells.append(f"{mean:.3f} ± {std:.3f}")
            errors = [results[n]["error"] for n in names]
            stats["error"] = {"mean": statistics.fmean(errors), "values": errors}
            spread = statistics.stdev(errors) if len(errors) > 1 else 0.0
            cells.append(f"{stats['error']['mean']:.3f} ± {spread:.3f}")
            summary[f"{kind}-{mode}" if mode else kind] = stats
            lines.append(f"| {label} | {mode or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines), summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CACHE / "distill_miniature")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="processes (one core each)")
    parser.add_argument("--images", type=int, default=2000, help="synthetic training images")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--input-size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    parser.add_argument("--sigma", type=float, nargs=2, default=(3.0, 3.0))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--epochs", type=int, default=1, help="stage 1 and student alone")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--stage2-epochs", type=int, default=1)
    parser.add_argument("--warmup-iters", type=int, default=30)
    parser.add_argument("--augment", default="coco-wholebody")
    parser.add_argument("--teacher-arch", default="rtmpose-s")
    parser.add_argument("--student-arch", default="rtmpose-t")
    parser.add_argument("--only", nargs="+", help="job kinds to run (teacher student s1 s2)")
    args = parser.parse_args()
    s = settings(args)
    out = args.out
    wall = time.perf_counter()
    cpu_data = _cpu_self()
    make_data(out / "data", s)
    cpu_data = _cpu_self() - cpu_data
    todo = jobs(args.seeds)
    if args.only:
        keep = {j.name for j in todo if j.kind in args.only}
        todo = [j for j in todo if j.name in keep]
    results = run_all(out, todo, s, args.jobs)
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    tree_cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    job_cpu = {name: r["cpu_s"] for name, r in results.items()}
    quiet_wall = cpu_data + makespan(todo, job_cpu, 2)
    import torch

    report = {
        "machine": machine_line(torch=torch.__version__),
        "load_average": os.getloadavg(),
        "settings": s,
        "seeds": args.seeds,
        "cpu_s_this_invocation": tree_cpu,
        "cpu_s_data": cpu_data,
        "cpu_s_jobs": sum(job_cpu.values()),
        "implied_wall_s_2_quiet_cores": quiet_wall,
        "wall_s_this_invocation": time.perf_counter() - wall,
        "jobs": results,
    }
    report["mean_pose_error"] = mean_pose_error(out / "data")
    if args.only is None:
        text, report["summary"] = table(results, args.seeds)
        print("\n" + text)
        print(f"\nthe training set's mean pose in each box: error {report['mean_pose_error']:.3f}")
    print(
        f"\nCPU time: {cpu_data + report['cpu_s_jobs']:.0f} s (data {cpu_data:.0f} s, jobs "
        f"{report['cpu_s_jobs']:.0f} s; this invocation's process tree {tree_cpu:.0f} s); "
        f"on 2 quiet cores about {quiet_wall / 60:.1f} min; wall here "
        f"{report['wall_s_this_invocation'] / 60:.1f} min, load {report['load_average'][0]:.1f}"
    )
    (out / "results.json").write_text(json.dumps(report, indent=1))
    print(f"{out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
