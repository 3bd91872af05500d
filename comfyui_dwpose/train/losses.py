"""DWPose's three losses, as mmpose 1.3.2 computes them in training.

Each reduction below is part of the recipe (it sets the balance between the terms):

- ``keypoint_loss`` (mmpose ``KLDiscretLoss``, beta 10, softmax on labels, target weights):
  KL per keypoint row averaged over bins, times the keypoint's weight, summed over rows and
  both axes, divided by K. Summed over the batch, not averaged.
- ``LogitLoss`` (``KDLoss``): KL(softmax(beta * teacher) || softmax(beta * student)) summed
  over bins and keypoints, averaged over the batch, x + y, divided by K, times ``weight``.
  It ignores the target weights: every keypoint is distilled, visible or not.
- ``FeatureLoss`` (``FeaLoss``): squared error of the student's last backbone feature
  (through a 1x1 ``align`` conv, with bias, when the channel counts differ) against the
  teacher's, summed and divided by the batch size, times ``alpha``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BETA = 10.0  # softmax temperature of the RTMPose head's loss (and of KDLoss, which reuses it)
FEATURE_ALPHA = 7e-5


def keypoint_loss(
    logits: tuple[torch.Tensor, torch.Tensor],
    labels: tuple[torch.Tensor, torch.Tensor],
    weights: torch.Tensor,
    beta: float = BETA,
    label_beta: float = BETA,
) -> torch.Tensor:
    """GT loss of SimCC logits ``(x [N,K,Wx], y [N,K,Wy])`` against Gaussian labels."""
    num_keypoints = logits[0].shape[1]
    flat_weights = weights.reshape(-1)
    total = logits[0].new_zeros(())
    for pred, target in zip(logits, labels):
        log_p = F.log_softmax(pred.reshape(-1, pred.shape[-1]) * beta, dim=1)
        soft_target = F.softmax(target.reshape(-1, target.shape[-1]) * label_beta, dim=1)
        per_row = F.kl_div(log_p, soft_target, reduction="none").mean(dim=1)
        total = total + (per_row * flat_weights).sum()
    return total / num_keypoints


class LogitLoss(nn.Module):
    """Logit distillation (``KDLoss``); no parameters."""

    def __init__(self, weight: float, beta: float = BETA) -> None:
        super().__init__()
        self.weight = weight
        self.beta = beta

    def forward(
        self,
        student: tuple[torch.Tensor, torch.Tensor],
        teacher: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        batch, num_keypoints = student[0].shape[:2]
        total = student[0].new_zeros(())
        for s, t in zip(student, teacher):
            log_s = F.log_softmax(s.reshape(batch * num_keypoints, -1) * self.beta, dim=1)
            p_t = F.softmax(t.detach().reshape(batch * num_keypoints, -1) * self.beta, dim=1)
            per_row = F.kl_div(log_s, p_t, reduction="none").sum(dim=1)
            total = total + self.weight * per_row.reshape(batch, num_keypoints).sum(dim=1).mean()
        return total / num_keypoints


class FeatureLoss(nn.Module):
    """Feature distillation (``FeaLoss``); ``align`` exists only when channels differ."""

    def __init__(
        self, student_channels: int, teacher_channels: int, alpha: float = FEATURE_ALPHA
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.align = (
            nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
            if student_channels != teacher_channels
            else None
        )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.align is not None:
            student = self.align(student)
        return F.mse_loss(student, teacher, reduction="sum") / teacher.shape[0] * self.alpha
