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


def test_token_tags_mark_the_words_the_rationale_cites(tok):
    from dualexpert.relevance.tags import (
        CITED_IRRELEVANT,
        CITED_RELEVANT,
        IGNORE,
        NOT_CITED,
        token_tags,
    )
    from dualexpert.relevance.trainer import PairCollator

    rows = [
        {"query": "cordless drills", "title": "DeWalt drill kit", "label": 1.0,
         "rationale": "A DeWalt drill is what the query asks for."},
        {"query": "garden hose", "title": "Kohler toilet seat", "label": 0.0,
         "rationale": "A toilet seat is not a hose."},
        {"query": "pipe wrench", "title": "Ridgid wrench", "label": 1.0, "rationale": None},
    ]  # fmt: skip
    batch = PairCollator(tok, 32, tags=True)(rows)
    assert "offset_mapping" not in batch  # the model never sees it
    tags = batch["rationale_tags"]
    assert tags.shape == batch["input_ids"].shape

    def by_word(i):
        words = tok.convert_ids_to_tokens(batch["input_ids"][i])
        return {w: int(t) for w, t in zip(words, tags[i], strict=True)}

    first, second = by_word(0), by_word(1)
    # "drills" matches "drill" (plural dropped); every word piece of "dewalt" takes its word's tag
    assert first["drills"] == first["drill"] == CITED_RELEVANT
    assert all(first[p] == CITED_RELEVANT for p in tok.tokenize("DeWalt"))
    assert all(first[p] == NOT_CITED for p in tok.tokenize("cordless kit"))
    assert first["[CLS]"] == first["[SEP]"] == IGNORE
    # the same citation in a pair that is not relevant is the other class
    assert second["toilet"] == second["seat"] == second["hose"] == CITED_IRRELEVANT
    assert all(second[p] == NOT_CITED for p in tok.tokenize("garden Kohler"))
    assert (tags[2] == IGNORE).all()  # no rationale: nothing to learn from this pair
    assert (tags[batch["attention_mask"] == 0] == IGNORE).all()
    # without any rationale in the batch there are no targets at all
    assert "rationale_tags" not in PairCollator(tok, 32, tags=True)(rows[2:])
    enc = tok([r["query"] for r in rows], [r["title"] for r in rows], padding=True,
              return_offsets_mapping=True)  # fmt: skip
    again = token_tags(enc, [(r["query"], r["title"]) for r in rows],
                       [r["rationale"] for r in rows], [r["label"] for r in rows])  # fmt: skip
    assert torch.equal(torch.tensor(again), tags)


def test_tags_variant_loss_is_token_cross_entropy(tok):
    torch.manual_seed(0)
    from dualexpert.relevance.trainer import PairCollator

    rows = [
        {"query": "cordless drill", "title": "DeWalt drill kit", "label": 1.0,
         "rationale": "It is a DeWalt drill."},
        {"query": "garden hose", "title": "Kohler toilet seat", "label": 0.0,
         "rationale": "A toilet seat is not a hose."},
    ]  # fmt: skip
    batch = PairCollator(tok, 32, tags=True)(rows)
    m = RationaleDistillModel(resolve_encoder("minilm"), aux="tags", lam=0.5)
    m.eval()
    out = m(**batch)
    with torch.no_grad():
        h = m.cross(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                    output_hidden_states=True).hidden_states[-1]  # fmt: skip
        t = batch["rationale_tags"]
        keep = t >= 0
        ce = torch.nn.functional.cross_entropy(m.tagger(h)[keep], t[keep])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(out["logits"], batch["labels"])
    assert out["loss_aux"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(bce.item() + 0.5 * ce.item(), rel=1e-5)
    # the gradient of the tag loss reaches the encoder (what the auxiliary task is for)
    m.train()
    m(**batch, aux_only=True)["loss"].backward()
    enc_grads = [p.grad for p in m.encoder_parameters() if p.grad is not None]
    assert enc_grads and any(g.abs().sum() > 0 for g in enc_grads)
    with pytest.raises(ValueError, match="tags"):
        RationaleDistillModel(resolve_encoder("minilm"), aux="tag")
