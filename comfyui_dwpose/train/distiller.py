"""DWPose's distiller: teacher, student and the distillation losses in one module.

Its state dict is mmpose's ``DWPoseDistiller``'s (``teacher.*``, ``student.*``,
``distill_losses.loss_fea.align.*``), so mmpose checkpoints load strictly and ours load in
mmpose. Stage 1: the student learns from the labels, the teacher's last feature map and its
logits, the distillation terms decaying linearly to 0 over training. Stage 2 (head-aware
self-distillation): the student's head runs on the frozen teacher's features and learns
from the teacher's logits only; the deployable model is the teacher's backbone with the
new head.

Teacher mode: mmengine's runner calls ``train()`` on the whole distiller, so in the released
recipe the teacher's BatchNorm normalises with batch statistics and its running statistics
keep moving (in stage 2 they are exported with the backbone). ``frozen_teacher=True`` keeps
the teacher in eval mode instead.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nets import build_model
from ..nets.checkpoint import distilled_weights
from .losses import FeatureLoss, LogitLoss, keypoint_loss

STAGE1_LOGIT_WEIGHT = 0.1
STAGE2_LOGIT_WEIGHT = 1.0


class Distiller(nn.Module):
    """``Distiller("rtmpose-l", "rtmpose-t", (256, 192), stage=1)``.

    ``teacher``/``student`` are architecture names of ``comfyui_dwpose.nets`` (stage 2:
    the same architecture twice); ``input_size`` is (height, width). Both nets are freshly
    initialised: load weights with ``load_state_dict`` (a whole distiller) or into
    ``.teacher`` / ``.student``.
    """

    def __init__(
        self,
        teacher: str,
        student: str,
        input_size: tuple[int, int],
        stage: int,
        frozen_teacher: bool = False,
    ) -> None:
        super().__init__()
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        if stage == 2 and teacher != student:
            raise ValueError(
                f"stage 2 distils a model into itself: teacher and student must be the same "
                f"architecture (got {teacher} and {student})"
            )
        self.stage = stage
        self.frozen_teacher = frozen_teacher
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.teacher_arch, self.arch = teacher, student  # arch: of the deployable model
        self.teacher = build_model(teacher, self.input_size).requires_grad_(False)
        self.student = build_model(student, self.input_size)
        self.distill_losses = nn.ModuleDict()
        if stage == 1:
            self.distill_losses["loss_fea"] = FeatureLoss(
                self.student.backbone.out_channels, self.teacher.backbone.out_channels
            )
            self.distill_losses["loss_logit"] = LogitLoss(STAGE1_LOGIT_WEIGHT)
        else:
            self.distill_losses["loss_logit"] = LogitLoss(STAGE2_LOGIT_WEIGHT)
            # Only the head learns; the student's backbone is kept (mmpose keeps it in the
            # state dict) but never runs.
            self.student.backbone.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.frozen_teacher:
            self.teacher.eval()
        return self

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The training losses (``losses``): what DistributedDataParallel wraps."""
        return self.losses(*args, **kwargs)

    def losses(
        self,
        inputs: torch.Tensor,
        x_labels: torch.Tensor,
        y_labels: torch.Tensor,
        weights: torch.Tensor,
        epoch: int,
        max_epochs: int,
    ) -> dict[str, torch.Tensor]:
        """Scalar losses of a normalised batch ``inputs [N,3,H,W]`` with SimCC targets.

        Stage 1: ``loss_kpt``, ``loss_fea``, ``loss_logit`` (the last two times
        ``1 - epoch / max_epochs``, epoch counted from 0). Stage 2: ``loss_logit``.
        """
        labels = tuple(_as_float(t, inputs.device) for t in (x_labels, y_labels))
        weights = _as_float(weights, inputs.device)
        with torch.no_grad():
            teacher_feats = self.teacher.backbone(inputs)
            teacher_logits = _float(self.teacher.head(teacher_feats))
        logit_loss = self.distill_losses["loss_logit"]
        if self.stage == 2:
            student_logits = _float(self.student.head(teacher_feats))
            return {"loss_logit": logit_loss(student_logits, teacher_logits)}
        student_feats = self.student.backbone(inputs)
        student_logits = _float(self.student.head(student_feats))
        decay = 1 - epoch / max_epochs
        feature_loss = self.distill_losses["loss_fea"]
        return {
            "loss_kpt": keypoint_loss(student_logits, labels, weights),
            "loss_fea": decay * feature_loss(student_feats[-1].float(), teacher_feats[-1].float()),
            "loss_logit": decay * logit_loss(student_logits, teacher_logits),
        }

    def predict(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SimCC logits of the deployable model (stage 2: teacher backbone + student head)."""
        if self.stage == 2:
            return self.student.head(self.teacher.backbone(inputs))
        return self.student(inputs)

    def export(self) -> dict[str, torch.Tensor]:
        """The deployable pose model's state dict (see ``deploy_state_dict``)."""
        return deploy_state_dict(self.state_dict(), self.stage)


class Supervised(nn.Module):
    """RTMPose trained on the labels alone: how a teacher is made, and the student-alone
    baseline. Laid out as a distiller without teacher (``student.*``) so that the loop,
    checkpoints and export treat it as a stage-1 run; its only loss is ``loss_kpt``."""

    stage = 1

    def __init__(self, arch: str, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.arch = arch
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.student = build_model(arch, self.input_size)

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return self.losses(*args, **kwargs)

    def losses(
        self,
        inputs: torch.Tensor,
        x_labels: torch.Tensor,
        y_labels: torch.Tensor,
        weights: torch.Tensor,
        epoch: int,
        max_epochs: int,
    ) -> dict[str, torch.Tensor]:
        """``loss_kpt`` of a normalised batch (``epoch`` and ``max_epochs`` unused)."""
        labels = tuple(_as_float(t, inputs.device) for t in (x_labels, y_labels))
        logits = _float(self.student(inputs))
        return {"loss_kpt": keypoint_loss(logits, labels, _as_float(weights, inputs.device))}


def deploy_state_dict(state: dict[str, torch.Tensor], stage: int) -> dict[str, torch.Tensor]:
    """A distiller's state dict into the plain pose model's, as mmpose's ``pth_transfer.py``.

    Stage 1 keeps ``student.*``; stage 2 (``--two_dis``) keeps ``teacher.backbone.*`` and
    ``student.head.*``. Prefixes are dropped, order kept, tensors copied.
    """
    return {k: v.detach().clone() for k, v in distilled_weights(state, "student", stage).items()}


def _as_float(values, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=device)


def _float(logits: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses are computed in float32 also under mixed precision."""
    return tuple(t.float() for t in logits)
