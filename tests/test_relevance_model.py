"""The distillation model's losses on tiny inputs (real MiniLM weights)."""

from __future__ import annotations

import pytest
import torch

from dualexpert.models import resolve_encoder
from dualexpert.relevance.model import RationaleDistillModel


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_encoder("minilm"))


def _batch(tok):
    enc = tok(
        ["cordless drill", "garden hose"],
        ["DeWalt drill kit", "Kohler toilet seat"],
        padding=True,
        return_tensors="pt",
    )
    r = tok(["it is a drill", "a seat is not a hose"], padding=True, return_tensors="pt")
    return dict(enc), r


def test_embedding_variant_loss_is_mse_of_mean_pool(tok):
    torch.manual_seed(0)
    m = RationaleDistillModel(resolve_encoder("minilm"), aux="embedding", embedding_dim=8, lam=0.1)
    m.eval()
    enc, _ = _batch(tok)
    target = torch.randn(2, 8)
    labels = torch.tensor([1.0, 0.0])
    out = m(**enc, labels=labels, rationale_embedding=target)
    with torch.no_grad():
        h = m.cross(**enc, output_hidden_states=True).hidden_states[-1]
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (h * mask).sum(1) / mask.sum(1)
        mse = ((m.transform(pooled) - target) ** 2).mean()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(out["logits"], labels)
    assert out["loss_aux"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert out["loss_cls"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(bce.item() + 0.1 * mse.item(), rel=1e-5)
    only = m(**enc, labels=labels, rationale_embedding=target, aux_only=True)
    assert only["loss"].item() == pytest.approx(mse.item(), rel=1e-5)


def test_decoder_loss_and_ignore_cls(tok):
    torch.manual_seed(0)
    enc, r = _batch(tok)
    labels = torch.tensor([1.0, 0.0])
    for ignore in (False, True):
        m = RationaleDistillModel(resolve_encoder("minilm"), aux="decoder", ignore_cls=ignore)
        seen = {}
        orig = m.decoder.forward

        def spy(states, mask, ids, attn, _orig=orig, seen=seen):
            seen["len"] = states.shape[1]
            return _orig(states, mask, ids, attn)

        m.decoder.forward = spy
        out = m(
            **enc, labels=labels, rationale_ids=r["input_ids"], rationale_mask=r["attention_mask"]
        )
        assert torch.isfinite(out["loss"]) and out["loss_aux"] > 0
        n = enc["input_ids"].shape[1]
        assert seen["len"] == (n - 1 if ignore else n)


def test_warmup_batch_without_any_rationale_backpropagates_nothing(tok):
    # partial rationales: a decoder warm-up batch may hold no rationale at all
    m = RationaleDistillModel(resolve_encoder("minilm"), aux="decoder")
    enc, _ = _batch(tok)
    out = m(**enc, labels=torch.tensor([1.0, 0.0]), aux_only=True)
    assert out["loss"].item() == 0.0
    out["loss"].backward()  # the Trainer's step; it raised before
    assert all(p.grad is None or not p.grad.any() for p in m.parameters())


def test_plain_cross_encoder_has_no_aux():
    m = RationaleDistillModel(resolve_encoder("minilm"), aux="none")
    assert m.decoder is None and m.transform is None
    with pytest.raises(ValueError, match="embedding_dim"):
        RationaleDistillModel(resolve_encoder("minilm"), aux="embedding")


def test_aux_norm_divides_by_the_first_batch_value(tok):
    torch.manual_seed(0)
    m = RationaleDistillModel(
        resolve_encoder("minilm"), aux="embedding", embedding_dim=8, lam=0.1, aux_norm=True
    )
    m.eval()  # no dropout: the same batch gives the same losses
    enc, _ = _batch(tok)
    labels = torch.tensor([1.0, 0.0])
    first = m(**enc, labels=labels, rationale_embedding=torch.randn(2, 8))
    assert m.aux_scale.item() == pytest.approx(first["loss_aux"].item(), rel=1e-6)
    # both losses start on the same scale: L_aux counts as 1.0 on the first batch
    assert first["loss"].item() == pytest.approx(first["loss_cls"].item() + 0.1, rel=1e-5)
    second = m(**enc, labels=labels, rationale_embedding=3 * torch.randn(2, 8))
    ratio = second["loss_aux"].item() / first["loss_aux"].item()
    assert ratio != pytest.approx(1.0, abs=1e-3)  # the scale stays the first batch's
    assert second["loss"].item() == pytest.approx(second["loss_cls"].item() + 0.1 * ratio, rel=1e-5)
