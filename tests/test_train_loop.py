"""The training loop: schedule, weight decay groups and EMA against hand-computed values;
stage 1 -> export -> stage 2 -> eval end to end on the COCO-WholeBody sample through the
real datasets and augmentation; exact resume after a kill (resumed with a data worker);
2 processes (gloo) against 1 with the same global batch."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import DATA, ROOT  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from comfyui_dwpose import DWPose  # noqa: E402
from comfyui_dwpose.cli import main  # noqa: E402
from comfyui_dwpose.images import load_image  # noqa: E402
from comfyui_dwpose.nets import build_model  # noqa: E402
from comfyui_dwpose.train import Distiller  # noqa: E402
from comfyui_dwpose.train.annotations import UBODY_SCENES, load_coco_wholebody  # noqa: E402
from comfyui_dwpose.train.data import training_set  # noqa: E402
from comfyui_dwpose.train.distiller import deploy_state_dict  # noqa: E402
from comfyui_dwpose.train.ema import EMA  # noqa: E402
from comfyui_dwpose.train.export import save_pose_model  # noqa: E402
from comfyui_dwpose.train.loop import TrainingError, train  # noqa: E402
from comfyui_dwpose.train.presets import PRESETS, preset  # noqa: E402
from comfyui_dwpose.train.schedule import Schedule, param_groups  # noqa: E402

ANN = DATA / "coco" / "test_coco_wholebody.json"
IMAGES = DATA / "coco"
BOXES = DATA / "coco" / "test_coco_det_AP_H_56.json"
SIZE = (64, 64)


def test_schedule_by_hand():
    s = Schedule(iters_per_epoch=10, cosine_begin=2, cosine_end=4, warmup_iters=5)
    assert s(0) == 1e-5
    assert s(2) == pytest.approx(1e-5 + (1 - 1e-5) * 2 / 4, rel=1e-12)
    assert s(4) == s(19) == 1.0
    assert s(20) == 1.0  # cosine starts at epoch 2
    assert s(30) == pytest.approx(0.05 + 0.95 * 0.5, rel=1e-12)
    assert s(39) == pytest.approx(0.05 + 0.95 * (1 + math.cos(math.pi * 19 / 20)) / 2, rel=1e-12)
    released = Schedule(iters_per_epoch=100, cosine_begin=135, cosine_end=270)
    assert released(999) == 1.0 and released(500) == pytest.approx(1e-5 + (1 - 1e-5) * 500 / 999)


def test_presets_hold_the_released_numbers():
    x_l = preset("x-l-384", 1)
    assert (x_l.teacher, x_l.student, x_l.input_size, x_l.sigma) == (
        "rtmpose-x", "rtmpose-l", (384, 288), (6.0, 6.93),
    )  # fmt: skip
    assert (x_l.epochs, x_l.batch_size, x_l.peak_lr, x_l.kpt_loss_batch, x_l.cosine) == (
        270, 256, 4e-3, 32, (135, 270),
    )  # fmt: skip
    assert x_l.replace(batch_size=128).peak_lr == 2e-3
    l_t = preset("l-t-256", 1)
    assert (l_t.sigma, l_t.batch_size, l_t.kpt_loss_batch, l_t.mild_epoch) == (
        (4.9, 5.66),
        512,
        64,
        240,
    )
    t_tt = preset("t-tt-256", 2)
    assert (t_tt.teacher, t_tt.student, t_tt.epochs, t_tt.cosine) == (
        "rtmpose-t",
        "rtmpose-t",
        60,
        (135, 270),
    )
    assert sorted(n for n, c in PRESETS.items() if c.stage == 1) == [
        "l-m-256", "l-s-256", "l-t-256", "x-l-256", "x-l-384",
    ]  # fmt: skip
    with pytest.raises(KeyError, match="stage-2 preset"):
        preset("t-tt-256", 1)


def test_no_weight_decay_on_norms_and_biases():
    with torch.device("meta"):
        distiller = Distiller("rtmpose-s", "rtmpose-t", (256, 192), stage=1)
    decay, no_decay = param_groups(distiller, 0.05)
    names = {id(p): n for n, p in distiller.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == 0.05
    assert all(n.startswith("student.") or n.startswith("distill_losses.") for n in exempt)
    assert all(".bn." in n or n.endswith(".bias") for n in exempt)
    assert "student.head.final_layer.bias" in exempt
    assert "distill_losses.loss_fea.align.bias" in exempt
    decayed = {names[id(p)] for p in decay["params"]}
    # ScaleNorm's g and the GAU's gamma/beta are not norm layers in mmengine's sense
    assert {"student.head.mlp.0.g", "student.head.gau.gamma", "student.head.gau.ln.g"} <= decayed
    assert not any(n.startswith("teacher.") for n in decayed | exempt)


def test_ema_follows_exp_momentum():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(net, momentum=2e-4, gamma=2000)
    values = []
    for step in range(3):
        with torch.no_grad():
            net[0].weight.fill_(float(step + 1))
            net[1].num_batches_tracked.fill_(10 + step)
        ema.update(net)
        values.append(float(step + 1))
    m1 = (1 - 2e-4) * math.exp(-2 / 2000) + 2e-4
    m2 = (1 - 2e-4) * math.exp(-3 / 2000) + 2e-4
    expected = (1 * (1 - m1) + 2 * m1) * (1 - m2) + 3 * m2
    assert ema.state["0.weight"][0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert ema.state["1.num_batches_tracked"].item() == 10  # integers keep the first copy


def seeded_teacher(path, seed: int = 1):
    torch.manual_seed(seed)
    state = build_model("rtmpose-t", SIZE).state_dict()
    return save_pose_model(state, "rtmpose-t", SIZE, path)


def tiny(stage: int):
    name = "l-t-256" if stage == 1 else "t-tt-256"
    return preset(name, stage).replace(
        teacher="rtmpose-t",
        input_size=SIZE,
        batch_size=4,
        lr=0.5,
        warmup_iters=2,
        epochs=2,
        workers=0,
    )


def test_stage1_stage2_eval_export_end_to_end(tmp_path, capsys):
    teacher_file = seeded_teacher(tmp_path / "teacher.safetensors")
    records = load_coco_wholebody(ANN, IMAGES)
    dataset = training_set(records, tiny(1))
    assert len(dataset) == 12 and dataset.augment.rotate_factor == 90  # coco-ubody
    one = train(
        tiny(1),
        dataset,
        tmp_path / "s1",
        load_file(teacher_file),
        iterations=2,
        log_every=1,
        progress=False,
    )
    log = [
        json.loads(line) for line in (tmp_path / "s1" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["iteration"] for r in log] == [1, 2]
    peak = 0.5 * 4 / 512  # lr 0.5 at the preset's batch 512, scaled to 4
    assert [r["lr"] for r in log] == pytest.approx([peak * 1e-5, peak], rel=1e-12)
    assert all(
        {"loss_kpt", "loss_fea", "loss_logit", "loss", "lr", "grad_norm"} <= set(r) for r in log
    )
    saved = torch.load(one.checkpoint, weights_only=True)
    assert saved["meta"]["iteration"] == 2
    exported = load_file(one.model)
    expected = deploy_state_dict(saved["state_dict"], 1)
    assert exported.keys() == expected.keys()  # safetensors sorts its keys
    assert all(torch.equal(exported[k], expected[k]) for k in expected)

    two = train(
        tiny(2),
        training_set(records, tiny(2)),
        tmp_path / "s2",
        load_file(one.model),
        iterations=2,
        progress=False,
    )
    saved2 = torch.load(two.checkpoint, weights_only=True)
    stage2 = load_file(two.model)
    assert all(
        torch.equal(stage2[k], v) for k, v in deploy_state_dict(saved2["state_dict"], 2).items()
    )
    # the backbone is the stage-1 model's, its BatchNorm statistics moved (released mode)
    assert torch.equal(
        stage2["backbone.stem.0.conv.weight"], exported["backbone.stem.0.conv.weight"]
    )
    assert not torch.equal(
        stage2["backbone.stem.0.bn.running_mean"], exported["backbone.stem.0.bn.running_mean"]
    )

    # dwpose convert on the stage-2 checkpoint makes the same model as the run's export
    converted = tmp_path / "converted.safetensors"
    assert main(["convert", str(two.checkpoint), "-o", str(converted)]) == 0
    assert load_file(converted).keys() == stage2.keys()
    assert all(torch.equal(load_file(converted)[k], v) for k, v in stage2.items())

    onnx_file = tmp_path / "dw-tt.onnx"
    models = tmp_path / "models"
    assert (
        main(
            [
                "export",
                str(tmp_path / "s2"),
                "-o",
                str(onnx_file),
                "--register",
                "--models-dir",
                str(models),
            ]
        )
        == 0
    )
    assert (models / "dw-tt.onnx").is_file()
    for model_file in (onnx_file, two.model):
        estimator = DWPose(
            pose_model=str(model_file),
            use_detector=False,
            backend="onnxruntime" if model_file.suffix == ".onnx" else "torch",
        )
        frame = estimator(load_image(IMAGES / "000000000785.jpg"))
        assert frame.keypoints.shape == (1, 133, 2) and np.isfinite(frame.keypoints).all()

    metrics_file = tmp_path / "metrics.json"
    args = ["eval", "--ann", str(ANN), "--images", str(IMAGES), "--model", str(two.model)]
    args += ["--predictions", str(tmp_path / "pred.json"), "--out", str(metrics_file), "--rescore"]
    assert main(args) == 0
    metrics = json.loads(metrics_file.read_text())
    assert set(metrics) == {"body", "foot", "face", "lefthand", "righthand", "wholebody"}
    predictions = json.loads((tmp_path / "pred.json").read_text())
    assert len(predictions) == 12 and set(predictions[0]) >= {
        "image_id",
        "keypoints",
        "face_kpts",
        "score",
    }
    # detected boxes: one prediction per person detection, scored by its box
    args = ["eval", "--ann", str(ANN), "--images", str(IMAGES), "--model", str(onnx_file)]
    args += ["--boxes", str(BOXES), "--predictions", str(tmp_path / "det.json")]
    assert main([*args, "--out", str(metrics_file), "--no-flip-test"]) == 0
    detections = json.loads(BOXES.read_text())
    predictions = json.loads((tmp_path / "det.json").read_text())
    assert [(p["image_id"], p["score"]) for p in predictions] == [
        (d["image_id"], pytest.approx(d["score"], rel=1e-6)) for d in detections
    ]


def cli_train(out, teacher_file, *extra, lr="0.5"):
    args = [
        "train",
        "stage1",
        "--preset",
        "l-t-256",
        "--teacher-arch",
        "rtmpose-t",
        "--teacher",
        str(teacher_file),
    ]
    args += ["--ann", str(ANN), "--images", str(IMAGES), "--out", str(out), "--input-size", "64x64"]
    args += [
        "--batch-size",
        "4",
        "--lr",
        lr,
        "--warmup-iters",
        "1",
        "--epochs",
        "2",
        "--workers",
        "0",
    ]
    args += ["--checkpoint-every", "1", "--log-every", "1", *extra]
    return args


def read_log(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def run_cli(args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "comfyui_dwpose.cli", *args], cwd=ROOT, env=env, **kwargs
    )


def torchrun(args):
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*launcher, "-m", "comfyui_dwpose.cli", *args], cwd=ROOT, env=env)


def load_checkpoint(folder) -> dict:
    return torch.load(folder / "last.pt", weights_only=True)


def test_resume_after_a_kill_and_two_processes(tmp_path):
    """One run of 4 iterations (2 epochs of 3 batches, augmented) is the reference for
    both: a run killed (SIGKILL) after its first checkpoints and resumed must end bit for
    bit equal, though it loads its data in a forked worker (which must see each epoch's
    ``set_epoch``); 2 processes with the same global batch must give its loss curve
    (float tolerance). The learning rate is the
    released one (4e-3 at batch 512, so 3e-5 at 4): at much larger rates Adam's first steps
    turn float-level differences of near-zero gradients into +-lr weight moves."""
    teacher_file = seeded_teacher(tmp_path / "teacher.safetensors")
    common = ("--iterations", "4")
    whole = run_cli(cli_train(tmp_path / "whole", teacher_file, *common, lr="4e-3"))
    worker = ("--workers", "1")
    killed = run_cli(cli_train(tmp_path / "killed", teacher_file, *common, *worker, lr="4e-3"))
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and killed.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    at_kill = load_checkpoint(tmp_path / "killed")
    assert 1 <= at_kill["meta"]["iteration"] < 4
    resumed = run_cli(cli_train(tmp_path / "killed", teacher_file, *common, *worker, lr="4e-3"))
    two = torchrun(cli_train(tmp_path / "two", teacher_file, *common, lr="4e-3"))
    assert whole.wait() == 0 and resumed.wait() == 0 and two.wait() == 0

    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "killed")
    for part in ("state_dict", "ema_state_dict"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][key]["exp_avg_sq"])
    # the weights moved after the resumed checkpoint: the comparison is not vacuous
    name = "module.student.head.cls_x.weight"
    assert not torch.equal(a["ema_state_dict"][name], at_kill["ema_state_dict"][name])
    model_a = load_file(tmp_path / "whole" / "model.safetensors")
    model_b = load_file(tmp_path / "killed" / "model.safetensors")
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    log_a, log_b = read_log(tmp_path / "whole"), read_log(tmp_path / "killed")
    for record in log_a + log_b:
        del record["time"]
    assert log_a == log_b and len(log_a) == 4

    log_two = read_log(tmp_path / "two")
    assert len(log_two) == 4
    # Iteration 1 (same weights, data and global BatchNorm statistics; only the order of
    # float sums differs) agrees to 1e-5 (measured: 1e-6). After it, Adam's normalised
    # steps move weights whose gradients are float noise by up to +-lr (measured: 6e-5 =
    # 2 lr after 4 steps), so later losses agree to ~6e-5 and the gradient norm to ~1e-3.
    keys = ("loss", "loss_kpt", "loss_fea", "loss_logit", "lr", "grad_norm")
    assert [log_two[0][k] for k in keys] == pytest.approx([log_a[0][k] for k in keys], rel=1e-5)
    for x, y in zip(log_a, log_two):
        for key in keys:
            tolerance = 5e-3 if key == "grad_norm" else 2e-4
            assert y[key] == pytest.approx(x[key], rel=tolerance), (x["iteration"], key)
    assert log_a[-1]["loss"] < 0.8 * log_a[0]["loss"]  # it trains
    weights_two = load_checkpoint(tmp_path / "two")["state_dict"]
    difference = max(
        (a["state_dict"][k] - v).abs().max().item()
        for k, v in weights_two.items()
        if v.is_floating_point()
    )
    assert difference < 1e-4


class RowModel(torch.nn.Module):
    """simcc_x[n, k, b] = (k + 1) * (first row of the red plane)[b // 2]; simcc_y constant."""

    def forward(self, x):
        row = x[:, 0, 0, :].repeat_interleave(2, dim=-1)  # [N, 2W]
        k = torch.arange(1, 134, dtype=x.dtype)[None, :, None]
        return row[:, None, :] * k, torch.ones(x.shape[0], 133, 2 * x.shape[2]) * k


def test_flip_test_reverses_bins_swaps_sides_and_averages():
    from comfyui_dwpose.schema import FLIP_INDICES
    from comfyui_dwpose.train.predict import predict

    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[0, 0, 5] = 255  # a bright pixel at x = 5 in the first row
    sample = {"image": image, "meta": {"image_id": 1, "center": [16, 16], "scale": [32, 32]}}
    plain, flipped = (
        predict(RowModel(), [sample], (32, 32), flip_test=f, device="cpu", progress=False)[0]
        for f in (False, True)
    )
    points = coco_eval_points(plain)
    assert (points[:, 0] == 5).all()  # argmax bin 10 -> x = 5 (crop = image here)
    flipped_points = coco_eval_points(flipped)
    # reversing the flipped run's bins maps x = 5 back to bins 10/11: same location; the
    # score averages keypoint k's and its mirror's scales
    assert (flipped_points[:, 0] == 5).all()
    row_max = (255 - 123.675) / 58.395
    expected = [
        min(row_max * (k + 1 + FLIP_INDICES[k] + 1) / 2, (k + 1 + FLIP_INDICES[k] + 1) / 2)
        for k in range(133)
    ]
    np.testing.assert_allclose(flipped_points[:, 2], expected, rtol=1e-6)
    np.testing.assert_allclose(
        points[:, 2], [min(row_max * (k + 1), k + 1) for k in range(133)], rtol=1e-6
    )


def coco_eval_points(result):
    from comfyui_dwpose.train.coco_eval import whole_body

    return whole_body(result)


def test_train_reads_ubody_beside_coco(tmp_path, capsys):
    """--ubody adds the 15 scenes (every 10th image id) to --ann's people: here each scene
    holds the COCO-WholeBody sample with its image ids times 10, so 12 + 15 x 12 people."""
    data = json.loads(ANN.read_text())
    for image in data["images"]:
        image["id"] *= 10
    for ann in data["annotations"]:
        ann["image_id"] *= 10
    root = tmp_path / "UBody"
    for scene in UBODY_SCENES:
        (root / "annotations" / scene).mkdir(parents=True)
        (root / "annotations" / scene / "train_annotations.json").write_text(json.dumps(data))
    (root / "images").symlink_to(IMAGES.resolve())
    args = ["train", "stage1", "--preset", "l-t-256", "--ann", str(ANN), "--images", str(IMAGES)]
    args += ["--out", str(tmp_path / "run"), "--batch-size", "1000"]
    assert main(args) == 1
    assert "the dataset has 12 samples, fewer than one batch of 1000" in capsys.readouterr().err
    assert main([*args, "--ubody", str(root)]) == 1
    assert "the dataset has 192 samples, fewer than one batch" in capsys.readouterr().err


def test_training_alone_has_only_the_gt_loss(tmp_path):
    config = tiny(1).replace(teacher=None)
    dataset = training_set(load_coco_wholebody(ANN, IMAGES), config)
    result = train(
        config, dataset, tmp_path / "alone", None, iterations=1, log_every=1, progress=False
    )
    assert set(read_log(tmp_path / "alone")[0]) == {
        "iteration", "epoch", "loss_kpt", "loss", "lr", "grad_norm", "time",
    }  # fmt: skip
    saved = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    assert all(k.startswith("student.") for k in saved)
    model = load_file(result.model)
    assert all(torch.equal(model[k[len("student.") :]], v) for k, v in saved.items())
    with pytest.raises(TrainingError, match="stage 2 needs a teacher"):
        train(tiny(2).replace(teacher=None), dataset, tmp_path / "x", None, progress=False)
