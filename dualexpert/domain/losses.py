"""Losses of the domain expert (paper section 3.1.2), as ``nn.Module``s.

* :class:`FocalLoss`, eq. 1: ``-alpha_k (1 - q_k)^gamma log q_k`` for the true class ``k``.
* :class:`BootstrapLoss`, eq. 2: per-class binary cross-entropy weighted by ``beta`` plus the
  soft-bootstrap term ``(1 - beta) sum_k q_k log q_k`` that lets the model disagree with a
  perceptually inconsistent label (Reed et al., 2014).
* :class:`TwoPhaseLoss`, eq. 3: phase 1 until the global step ``gate_step``, phase 2 after.
* :class:`TeacherLoss`: knowledge distillation (Hinton et al., 2015) on top of it: a share of the
  loss is the cross-entropy between a teacher's softened distribution and the student's, at
  temperature ``T`` and scaled by ``T**2``.

``q`` is the softmax over the leaf categories. All losses average over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | torch.Tensor | None = None):
        super().__init__()
        self.gamma = float(gamma)
        if alpha is not None:
            self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32))
        else:
            self.alpha = None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logq = F.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
        q = logq.exp()
        loss = -((1.0 - q) ** self.gamma) * logq
        if self.alpha is not None:
            loss = loss * self.alpha[labels]
        return loss.mean()


class BootstrapLoss(nn.Module):
    def __init__(self, beta: float = 0.9, eps: float = 1e-7):
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.eps = eps

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, beta: float | None = None
    ) -> torch.Tensor:
        b = self.beta if beta is None else float(beta)
        q = F.softmax(logits.float(), dim=-1).clamp(self.eps, 1.0 - self.eps)
        p = F.one_hot(labels, q.shape[-1]).to(q.dtype)
        bce = p * q.log() + (1.0 - p) * (1.0 - q).log()
        boot = q * q.log()
        return -(b * bce + (1.0 - b) * boot).sum(-1).mean()


class TwoPhaseLoss(nn.Module):
    """Phase 1 (focal, or plain cross-entropy when off) before ``gate_step``; phase 2
    (bootstrap with ``beta``) from ``gate_step`` on. With the bootstrap off, phase 1 runs
    throughout; with the focal loss off, phase 1 is cross-entropy."""

    def __init__(
        self,
        focal: FocalLoss | None,
        bootstrap: BootstrapLoss | None,
        gate_step: int,
    ):
        super().__init__()
        self.focal = focal
        self.bootstrap = bootstrap
        self.gate_step = int(gate_step)

    def phase(self, step: int) -> int:
        return 2 if self.bootstrap is not None and step >= self.gate_step else 1

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        if self.phase(step) == 2:
            assert self.bootstrap is not None
            return self.bootstrap(logits, labels)
        if self.focal is not None:
            return self.focal(logits, labels)
        return F.cross_entropy(logits.float(), labels)


class TeacherLoss(nn.Module):
    """``(1 - weight) * base + weight * T**2 * CE(teacher_T, student_T)``.

    The teacher's distribution comes sparse: for each row the indices of its ``k`` most
    probable classes and their probabilities at temperature ``T``, renormalised over the ``k``
    (the mass outside them is dropped). ``base`` is the
    :class:`TwoPhaseLoss`, so the focal-then-bootstrap schedule keeps running on the labels.
    """

    def __init__(self, base: TwoPhaseLoss, weight: float = 0.5, temperature: float = 2.0):
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be above 0, got {temperature}")
        self.base, self.weight, self.temperature = base, float(weight), float(temperature)

    def phase(self, step: int) -> int:
        return self.base.phase(step)

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        step: int,
        teacher_idx: torch.Tensor,
        teacher_p: torch.Tensor,
    ) -> torch.Tensor:
        hard = self.base(logits, labels, step)
        t = self.temperature
        logq = F.log_softmax(logits.float() / t, dim=-1).gather(1, teacher_idx)
        soft = -(teacher_p.float() * logq).sum(-1).mean() * t * t
        return (1.0 - self.weight) * hard + self.weight * soft


def class_weights(counts: Sequence[int], power: float = 0.5) -> torch.Tensor:
    """alpha_k proportional to ``count_k ** -power``, normalised so the sample mean is 1.

    ``power=0`` gives uniform weights, ``1`` inverse frequency; ``0.5`` (default) tempers it.
    Classes with no examples get the largest weight seen.
    """
    c = torch.as_tensor(list(counts), dtype=torch.float64)
    w = torch.where(c > 0, c.clamp(min=1).pow(-power), torch.zeros_like(c))
    if (c == 0).any():
        w[c == 0] = w.max() if (c > 0).any() else 1.0
    total = (w * c).sum()
    w = w * (c.sum() / total) if total > 0 else torch.ones_like(w)
    return w.float()
