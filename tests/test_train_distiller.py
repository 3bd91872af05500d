"""Distiller: mmpose DWPoseDistiller's state-dict layout, its losses recomputed from the
documented formulas in float64 numpy, the two teacher modes, and pth_transfer's export."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import DATA  # noqa: E402

from comfyui_dwpose.train import Distiller, simcc_labels  # noqa: E402
from comfyui_dwpose.train.distiller import Supervised, deploy_state_dict  # noqa: E402

KEYS = DATA / "openmmlab" / "keys"


def official_keys(name: str, prefix: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (KEYS / f"keys-{name}.txt").read_text().splitlines():
        key, shape, _ = line.split("\t")
        out[prefix + key] = tuple(int(d) for d in shape.strip("[]").split(",") if d.strip())
    return out


def meta_distiller(*args, **kwargs) -> Distiller:
    with torch.device("meta"):
        return Distiller(*args, **kwargs)


@pytest.mark.parametrize(
    ("teacher", "student", "size", "stage", "align"),
    [
        ("rtmpose-x", "rtmpose-l", (384, 288), 1, (1280, 1024)),  # DW x-l 384
        ("rtmpose-l", "rtmpose-t", (256, 192), 1, (1024, 384)),  # DW l-t
        ("rtmpose-l", "rtmpose-m", (256, 192), 1, (1024, 768)),  # DW l-m
        ("rtmpose-l", "rtmpose-l", (384, 288), 2, None),  # DW l-ll 384
        ("rtmpose-t", "rtmpose-t", (256, 192), 2, None),  # DW t-tt
    ],
)
def test_state_dict_is_mmpose_layout(teacher, student, size, stage, align):
    h = size[0]
    expected = official_keys(f"{teacher}-wb-{h}", "teacher.") | official_keys(
        f"{student}-wb-{h}", "student."
    )
    if align:
        teacher_channels, student_channels = align  # a 1x1 conv from student to teacher
        expected["distill_losses.loss_fea.align.weight"] = (
            teacher_channels,
            student_channels,
            1,
            1,
        )
        expected["distill_losses.loss_fea.align.bias"] = (teacher_channels,)
    state = meta_distiller(teacher, student, size, stage).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


@pytest.fixture(scope="module")
def seeded_t(openmmlab):
    return torch.load(openmmlab / "rtmpose-t-wb-256.pt", weights_only=True)


def test_loads_an_mmpose_stage2_state_dict_strictly_and_exports_like_pth_transfer(seeded_t):
    # A stage-2 distiller of the released t-tt config: teacher = seeded RTMPose-t, student
    # = the same weights perturbed, so that backbone and head origins are told apart.
    student = {k: v + 1 if v.is_floating_point() else v for k, v in seeded_t.items()}
    mm_state = {f"teacher.{k}": v for k, v in seeded_t.items()}
    mm_state |= {f"student.{k}": v for k, v in student.items()}
    distiller = Distiller("rtmpose-t", "rtmpose-t", (256, 192), stage=2)
    distiller.load_state_dict(mm_state, strict=True)
    exported = distiller.export()
    # pth_transfer --two_dis: teacher.backbone.* then student.head.*, prefixes dropped.
    expected = [(k, v) for k, v in seeded_t.items() if k.startswith("backbone.")]
    expected += [(k, v) for k, v in student.items() if k.startswith("head.")]
    assert list(exported) == [k for k, _ in expected]
    for k, v in expected:
        assert torch.equal(exported[k], v), k
    # stage 1 keeps student.* only
    stage1 = deploy_state_dict(mm_state | {"distill_losses.loss_fea.align.bias": torch.ones(3)}, 1)
    assert list(stage1) == list(student)
    assert all(torch.equal(stage1[k], student[k]) for k in student)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def expected_losses(t_feat, s_feat, t_logits, s_logits, labels, weights, align, epoch, max_epochs):
    """The documented formulas, float64, written out per term."""
    k = s_logits[0].shape[1]
    kpt = 0.0
    for pred, label in zip(s_logits, labels):
        log_p = np_log_softmax(10 * pred)
        log_q = np_log_softmax(10 * label)
        kl = (np.exp(log_q) * (log_q - log_p)).mean(axis=-1)  # (N,K), mean over bins
        kpt += (kl * weights).sum()
    kpt /= k
    logit = 0.0
    for s, t in zip(s_logits, t_logits):
        log_s, log_t = np_log_softmax(10 * s), np_log_softmax(10 * t)
        kl = (np.exp(log_t) * (log_t - log_s)).sum(axis=-1)  # (N,K), sum over bins
        logit += 0.1 * kl.sum(axis=1).mean()
    logit /= k
    weight, bias = align
    mapped = np.einsum("oc,nchw->nohw", weight[:, :, 0, 0], s_feat) + bias[None, :, None, None]
    fea = ((mapped - t_feat) ** 2).sum() / t_feat.shape[0] * 7e-5
    decay = 1 - epoch / max_epochs
    return {"loss_kpt": kpt, "loss_fea": decay * fea, "loss_logit": decay * logit}


def run_parts(net, inputs):
    feats = net.backbone(inputs)
    return feats[-1], net.head(feats)


def to64(t):
    return t.detach().double().numpy()


@pytest.mark.parametrize("frozen", [False, True])
def test_stage1_losses_follow_the_formulas_in_both_teacher_modes(frozen):
    torch.manual_seed(0)
    distiller = Distiller("rtmpose-s", "rtmpose-t", (64, 64), stage=1, frozen_teacher=frozen)
    for bn in distiller.teacher.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):  # distinct running statistics
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    reference = copy.deepcopy(distiller)
    initial_mean = distiller.teacher.backbone.stem[0].bn.running_mean.clone()
    inputs = torch.randn(3, 3, 64, 64)
    rng = np.random.default_rng(1)
    points = rng.uniform(-4, [68, 68], size=(3, 133, 2))
    vis = rng.choice([0.0, 0.3, 1.0], size=(3, 133))
    x_labels, y_labels, weights = simcc_labels(points, vis, (64, 64), (4.9, 5.66))

    losses = distiller.train().losses(inputs, x_labels, y_labels, weights, epoch=3, max_epochs=10)
    assert set(losses) == {"loss_kpt", "loss_fea", "loss_logit"}
    assert all(v.ndim == 0 for v in losses.values())

    # The reference runs the nets directly: the teacher in train mode (batch statistics)
    # as released, in eval mode when frozen.
    reference.teacher.train(not frozen)
    with torch.no_grad():
        t_feat, t_logits = run_parts(reference.teacher, inputs)
        s_feat, s_logits = run_parts(reference.student.train(), inputs)
    align = reference.distill_losses["loss_fea"].align
    expected = expected_losses(
        to64(t_feat),
        to64(s_feat),
        [to64(t) for t in t_logits],
        [to64(s) for s in s_logits],
        (x_labels.astype(np.float64), y_labels.astype(np.float64)),
        weights.astype(np.float64),
        (to64(align.weight), to64(align.bias)),
        3,
        10,
    )
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name

    # Teacher BatchNorm: running statistics move in the released mode, stay when frozen.
    after = distiller.teacher.backbone.stem[0].bn.running_mean
    assert torch.equal(after, initial_mean) is frozen
    assert distiller.teacher.training is not frozen and distiller.student.training


def test_stage2_runs_the_student_head_on_the_teacher_features():
    torch.manual_seed(0)
    distiller = Distiller("rtmpose-t", "rtmpose-t", (64, 64), stage=2)
    reference = copy.deepcopy(distiller)
    inputs = torch.randn(2, 3, 64, 64)
    x, y, w = simcc_labels(np.zeros((2, 133, 2)), np.ones((2, 133)), (64, 64), 4.9)
    losses = distiller.losses(inputs, x, y, w, epoch=5, max_epochs=10)
    assert set(losses) == {"loss_logit"}
    with torch.no_grad():
        feats = reference.teacher.train().backbone(inputs)
        t_logits = reference.teacher.head(feats)
        s_logits = reference.student.head(feats)
    expected = 0.0
    for s, t in zip(s_logits, t_logits):
        log_s, log_t = np_log_softmax(10 * to64(s)), np_log_softmax(10 * to64(t))
        expected += (np.exp(log_t) * (log_t - log_s)).sum(axis=-1).sum(axis=1).mean()
    expected /= 133  # weight 1, no decay
    assert losses["loss_logit"].item() == pytest.approx(expected, rel=1e-5)
    losses["loss_logit"].backward()
    trained = {n for n, p in distiller.named_parameters() if p.grad is not None}
    assert trained == {n for n, _ in distiller.named_parameters() if n.startswith("student.head.")}


def test_bad_stage_and_stage2_mismatch():
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        meta_distiller("rtmpose-l", "rtmpose-t", (256, 192), 3)
    with pytest.raises(ValueError, match="same architecture"):
        meta_distiller("rtmpose-l", "rtmpose-t", (256, 192), 2)


def test_supervised_is_the_stage1_gt_loss_alone():
    """Training alone (teacher=None): the same student layout and GT loss as stage 1."""
    torch.manual_seed(0)
    distiller = Distiller("rtmpose-t", "rtmpose-t", (64, 64), stage=1)
    alone = Supervised("rtmpose-t", (64, 64))
    alone.student.load_state_dict(distiller.student.state_dict())
    assert list(alone.state_dict()) == [f"student.{k}" for k in distiller.student.state_dict()]
    inputs = torch.randn(2, 3, 64, 64)
    x, y, w = simcc_labels(np.full((2, 133, 2), 30.0), np.ones((2, 133)), (64, 64), 4.9)
    losses = alone.train().losses(inputs, x, y, w, epoch=0, max_epochs=1)
    expected = distiller.train().losses(inputs, x, y, w, epoch=0, max_epochs=1)["loss_kpt"]
    assert set(losses) == {"loss_kpt"}
    assert losses["loss_kpt"].item() == pytest.approx(expected.item(), rel=1e-6)
