"""Training settings, and the released DWPose pairs as presets.

Numbers from mmpose 1.3.2's ``configs/wholebody_2d_keypoint/dwpose/ubody`` and the RTMPose
configs they build on: 270 epochs for stage 1, 60 for stage 2; 8 GPUs x 64 crops at
256x192 (x 32 at 384x288); AdamW lr 4e-3 as configured (mmpose scales it by batch only
with ``--auto-scale-lr``, which the released commands do not pass), weight decay 0.05;
1000 warm-up iterations; cosine from epoch 135 to 270 down to 0.05x (stage 2 inherits
those epochs and so ends, at 60, before the cosine starts); EMA momentum 2e-4; gradient
norm clipped to 1; milder augmentation in the last 30 of the 270 epochs; seed 21.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MILD_EPOCHS = 30


@dataclass(frozen=True)
class TrainConfig:
    stage: int
    teacher: str | None  # None: the student learns from the labels alone (stage 1 only)
    student: str
    input_size: tuple[int, int]  # (height, width)
    sigma: tuple[float, float]  # SimCC Gaussian (x, y), in bins
    epochs: int
    batch_size: int  # global: all processes together
    lr: float  # the peak learning rate at ``lr_batch``; scaled linearly with batch_size
    lr_batch: int
    # The GT loss sums over the crops of one GPU: it is scaled to this many crops per
    # process (the released per-GPU batch) so that its weight against the distillation
    # terms does not depend on how many processes share the batch.
    kpt_loss_batch: int
    cosine_begin: int | None = None  # epoch; None: epochs // 2
    cosine_end: int | None = None  # epoch; None: epochs
    weight_decay: float = 0.05
    warmup_iters: int = 1000
    min_lr_ratio: float = 0.05
    ema_momentum: float = 2e-4
    clip_grad: float = 1.0
    # Augmentation: a pair of ``augment.PRESETS`` (DWPose's released models: coco-ubody).
    augment: str = "coco-ubody"
    # The dataset's milder augmentation starts here (the last 30 of 270 epochs); None:
    # epochs - 30. The dataset does the switch (its ``set_epoch``).
    mild_from: int | None = None
    frozen_teacher: bool = False
    seed: int = 21
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast; losses in float32)
    workers: int = 2

    @property
    def peak_lr(self) -> float:
        return self.lr * self.batch_size / self.lr_batch

    @property
    def cosine(self) -> tuple[int, int]:
        begin = self.epochs // 2 if self.cosine_begin is None else self.cosine_begin
        return begin, self.epochs if self.cosine_end is None else self.cosine_end

    @property
    def mild_epoch(self) -> int:
        return self.epochs - MILD_EPOCHS if self.mild_from is None else self.mild_from

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SIGMA_256 = (4.9, 5.66)
SIGMA_384 = (6.0, 6.93)


def _pair(teacher: str, student: str, height: int) -> tuple[TrainConfig, TrainConfig]:
    size, sigma, per_gpu = ((256, 192), SIGMA_256, 64) if height == 256 else ((384, 288), SIGMA_384, 32)  # fmt: skip
    common = dict(
        input_size=size,
        sigma=sigma,
        batch_size=8 * per_gpu,
        lr=4e-3,
        lr_batch=8 * per_gpu,
        kpt_loss_batch=per_gpu,
    )
    stage1 = TrainConfig(stage=1, teacher=teacher, student=student, epochs=270, **common)
    stage2 = TrainConfig(
        stage=2,
        teacher=student,
        student=student,
        epochs=60,
        cosine_begin=135,
        cosine_end=270,
        mild_from=240,
        **common,
    )
    return stage1, stage2


def _presets() -> dict[str, TrainConfig]:
    out = {}
    for teacher, student, height in (
        ("x", "l", 384),
        ("x", "l", 256),
        ("l", "m", 256),
        ("l", "s", 256),
        ("l", "t", 256),
    ):
        stage1, stage2 = _pair(f"rtmpose-{teacher}", f"rtmpose-{student}", height)
        out[f"{teacher}-{student}-{height}"] = stage1
        out[f"{student}-{student}{student}-{height}"] = stage2
    return out


# "x-l-384": stage 1 (RTMPose-x teaches -l at 384x288); "l-ll-384": its stage 2.
PRESETS: dict[str, TrainConfig] = _presets()


def preset(name: str, stage: int) -> TrainConfig:
    """A released setting by name; stage-1 names are ``T-S-H``, stage-2 ``S-SS-H``."""
    try:
        config = PRESETS[name]
    except KeyError:
        known = ", ".join(n for n, c in PRESETS.items() if c.stage == stage)
        raise KeyError(f"unknown preset {name!r}; stage {stage} presets: {known}") from None
    if config.stage != stage:
        raise KeyError(f"preset {name!r} is a stage-{config.stage} preset, not stage {stage}")
    return config
