"""Loss values against numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dualexpert.data import Product
from dualexpert.domain import (
    BootstrapLoss,
    FocalLoss,
    TeacherLoss,
    TwoPhaseLoss,
    class_weights,
)
from dualexpert.domain.augment import MASK, augment, mask_path
from dualexpert.taxonomy import Taxonomy

# logits log(0.5), log(0.3), log(0.2) give softmax exactly (0.5, 0.3, 0.2)
LOGITS = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])


def test_focal_by_hand():
    y = torch.tensor([1])  # q = 0.3
    got = FocalLoss(gamma=2.0)(LOGITS, y).item()
    assert got == pytest.approx(-(0.7**2) * math.log(0.3), rel=1e-5)  # 0.58995
    got_a = FocalLoss(gamma=2.0, alpha=[1.0, 3.0, 1.0])(LOGITS, y).item()
    assert got_a == pytest.approx(3 * 0.7**2 * -math.log(0.3), rel=1e-5)
    # gamma = 0 is cross-entropy
    ce = torch.nn.functional.cross_entropy(LOGITS, y).item()
    assert FocalLoss(gamma=0.0)(LOGITS, y).item() == pytest.approx(ce, rel=1e-6)


def test_bootstrap_by_hand():
    y = torch.tensor([0])  # p = (1, 0, 0), q = (0.5, 0.3, 0.2)
    bce = math.log(0.5) + math.log(0.7) + math.log(0.8)
    ent = 0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)
    beta = 0.8
    want = -(beta * bce + (1 - beta) * ent)
    assert BootstrapLoss(beta)(LOGITS, y).item() == pytest.approx(want, rel=1e-5)
    assert BootstrapLoss(1.0)(LOGITS, y).item() == pytest.approx(-bce, rel=1e-5)
    with pytest.raises(ValueError):
        BootstrapLoss(1.5)


def test_two_phase_gate():
    y = torch.tensor([1])
    loss = TwoPhaseLoss(FocalLoss(2.0), BootstrapLoss(0.9), gate_step=10)
    assert loss.phase(9) == 1 and loss.phase(10) == 2
    assert loss(LOGITS, y, 9).item() == pytest.approx(FocalLoss(2.0)(LOGITS, y).item())
    assert loss(LOGITS, y, 10).item() == pytest.approx(BootstrapLoss(0.9)(LOGITS, y).item())
    no_boot = TwoPhaseLoss(FocalLoss(2.0), None, gate_step=10)
    assert no_boot.phase(1000) == 1
    no_focal = TwoPhaseLoss(None, BootstrapLoss(0.9), gate_step=10)
    ce = torch.nn.functional.cross_entropy(LOGITS, y).item()
    assert no_focal(LOGITS, y, 0).item() == pytest.approx(ce, rel=1e-6)


def test_losses_have_gradients():
    logits = LOGITS.clone().requires_grad_(True)
    TwoPhaseLoss(FocalLoss(2.0), BootstrapLoss(0.9), 0)(logits, torch.tensor([2]), 5).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_teacher_loss_by_hand():
    """weight 0 is the label loss alone; weight 1 is T^2 times the cross-entropy between the
    teacher's sparse distribution and the student's softened one; in between, the mix."""
    y = torch.tensor([1])
    base = TwoPhaseLoss(FocalLoss(2.0), BootstrapLoss(0.9), gate_step=10)
    idx, p = torch.tensor([[0, 2]]), torch.tensor([[0.75, 0.25]])  # teacher: classes 0 and 2
    t = 2.0
    q = torch.softmax(LOGITS / t, -1)[0]  # the student at temperature 2
    soft = -(0.75 * math.log(q[0]) + 0.25 * math.log(q[2])) * t * t
    hard = FocalLoss(2.0)(LOGITS, y).item()
    assert TeacherLoss(base, 0.0, t)(LOGITS, y, 0, idx, p).item() == pytest.approx(hard, rel=1e-5)
    assert TeacherLoss(base, 1.0, t)(LOGITS, y, 0, idx, p).item() == pytest.approx(soft, rel=1e-5)
    mixed = TeacherLoss(base, 0.3, t)(LOGITS, y, 0, idx, p).item()
    assert mixed == pytest.approx(0.7 * hard + 0.3 * soft, rel=1e-5)
    assert TeacherLoss(base, 0.3, t).phase(10) == 2  # the label loss keeps its schedule
    with pytest.raises(ValueError, match="weight"):
        TeacherLoss(base, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        TeacherLoss(base, 0.5, 0.0)


def test_teacher_loss_pulls_the_student_to_the_teacher():
    """Gradient steps on the soft term alone move the student's distribution to the teacher's:
    its KL divergence from the teacher falls to near 0."""
    logits = LOGITS.clone().requires_grad_(True)
    idx, p = torch.tensor([[0, 1, 2]]), torch.tensor([[0.1, 0.2, 0.7]])
    loss = TeacherLoss(TwoPhaseLoss(None, None, 0), weight=1.0, temperature=1.0)
    opt = torch.optim.SGD([logits], lr=1.0)

    def kl() -> float:
        q = torch.softmax(logits.detach(), -1)[0]
        return float((p[0] * (p[0] / q).log()).sum())

    before = kl()
    for _ in range(200):
        opt.zero_grad()
        loss(logits, torch.tensor([0]), 0, idx, p).backward()
        opt.step()
    assert before > 0.3 and kl() < 1e-3


def test_class_weights():
    w = class_weights([100, 1, 0], power=1.0)
    # inverse frequency: 1/100 and 1/1, normalised so the sample mean is 1
    assert w[1] / w[0] == pytest.approx(100.0)
    assert (w[:2] * torch.tensor([100.0, 1.0])).sum() / 101 == pytest.approx(1.0)
    assert w[2] == pytest.approx(w.max())
    assert torch.allclose(class_weights([5, 7], power=0.0), torch.ones(2))


def test_mask_path_and_augment():
    import random

    rng = random.Random(0)
    outs = {mask_path(["A", "B", "C"], rng, 0.5) for _ in range(200)}
    assert "A > B > C" in outs and f"{MASK} > {MASK} > C" in outs
    assert f"{MASK} > {MASK} > {MASK}" not in outs
    tax = Taxonomy.from_paths([("A", "B", "C"), ("A", "D")])
    prods = [
        Product(id=str(i), title=f"t{i}", description="d", category=("A", "B", "C"))
        for i in range(10)
    ]
    synth = augment(prods, tax, ratio=0.5, per_leaf=3, seed=1)
    assert len(synth) == 5 + 2 * 3
    assert sum(p.category == ("A", "D") for p in synth) == 3  # a leaf with no data is covered
    twins = [p for p in synth if p.description == "d"]
    assert len(twins) == 5 and all(p.title.endswith("C") or MASK in p.title for p in twins)
