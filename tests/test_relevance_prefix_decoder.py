"""The pretrained prefix decoder (SmolLM2-135M, read from its GGUF file) of the rationale loss."""

from __future__ import annotations

import pytest
import torch

from dualexpert.models import resolve_decoder, resolve_encoder
from dualexpert.relevance.model import (
    PrefixLMDecoder,
    RationaleDistillModel,
    load_decoder_tokenizer,
)

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def smol() -> str:
    try:
        return resolve_decoder("smollm2")
    except Exception as e:  # noqa: BLE001 - the optional model package is absent
        pytest.skip(f"smollm2 not installed: {e}")


@pytest.fixture(scope="module")
def model(smol):
    torch.manual_seed(0)
    return RationaleDistillModel(resolve_encoder("minilm"), aux="decoder", decoder=smol)


def _enc(queries, titles):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    return dict(tok(queries, titles, padding=True, return_tensors="pt"))


def _rat(smol, texts):
    return load_decoder_tokenizer(smol)(texts, padding=True, return_tensors="pt")


def test_smollm2_is_a_frozen_pretrained_prefix_decoder(model, smol):
    dec = model.decoder
    assert isinstance(dec, PrefixLMDecoder)
    assert not any(p.requires_grad for p in dec.model.parameters())
    assert all(p.requires_grad for p in dec.bridge.parameters())
    # pretrained: fluent English costs far less than a uniform guess over its vocabulary
    enc = _enc(["cordless drill"], ["DeWalt 20V cordless drill kit"])
    r = _rat(smol, ["The product is a cordless drill, which is what the query asks for."])
    with torch.no_grad():
        out = model(**enc, labels=torch.tensor([1.0]),
                    rationale_ids=r["input_ids"], rationale_mask=r["attention_mask"])  # fmt: skip
    uniform = torch.log(torch.tensor(float(dec.model.config.vocab_size)))
    assert out["loss_aux"] < uniform - 4
    # the same as the LM's own loss on [prefix, BOS, rationale] with only the rationale scored
    with torch.no_grad():
        states = model.cross(**enc, output_hidden_states=True).hidden_states[-1]
        ids = torch.cat([dec.bos.expand(1, 1), r["input_ids"]], 1)
        inputs = torch.cat([dec.bridge(states), dec.model.get_input_embeddings()(ids)], 1)
        labels = torch.cat([torch.full((1, states.shape[1] + 1), -100), r["input_ids"]], 1)
        ref = dec.model(inputs_embeds=inputs, labels=labels).loss
    assert out["loss_aux"].item() == pytest.approx(ref.item(), rel=1e-4)


def test_padding_changes_nothing_and_the_prefix_matters(model, smol):
    """A pair's rationale loss is the same alone and padded into a batch with a longer pair
    (both its prefix and its rationale padded), and it depends on the encoder input."""
    model.eval()
    rationale = "A garden hose is not a toilet seat."
    alone = _enc(["garden hose"], ["Kohler toilet seat"])
    r1 = _rat(smol, [rationale])
    batch = _enc(
        ["garden hose", "heavy duty extension cord for outdoor use"],
        ["Kohler toilet seat", "Woods 100 ft. 12/3 SJTW outdoor extension cord, yellow"],
    )
    r2 = _rat(smol, [rationale, "The cord is an outdoor extension cord of the length asked for."])
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # padded prefix
    assert r2["attention_mask"][0].sum() < r2["attention_mask"].shape[1]  # padded rationale

    def loss(enc, r, i):
        enc = {k: v[i : i + 1] for k, v in enc.items()}
        ids, m = r["input_ids"][i : i + 1], r["attention_mask"][i : i + 1]
        with torch.no_grad():
            states = model.cross(**enc, output_hidden_states=True).hidden_states[-1]
            return model.decoder(states, enc["attention_mask"], ids, m).item()

    assert loss(batch, r2, 0) == pytest.approx(loss(alone, r1, 0), abs=2e-4)
    other = _enc(["garden hose"], ["50 ft. heavy duty rubber garden hose"])
    assert abs(loss(other, r1, 0) - loss(alone, r1, 0)) > 1e-3


def test_the_encoder_learns_from_the_rationale(smol):
    """Warm-up style steps on L_aux alone: the bridge and the encoder get gradient, the frozen
    LM none, and the rationale's loss falls."""
    torch.manual_seed(0)
    m = RationaleDistillModel(resolve_encoder("minilm"), aux="decoder", decoder=smol)
    m.eval()  # no dropout: the fall is the learning's alone
    enc = _enc(["cordless drill", "garden hose"], ["DeWalt drill kit", "Kohler toilet seat"])
    r = _rat(smol, ["Relevant: the kit is a cordless drill.", "Not relevant: a seat, no hose."])
    kw = dict(labels=torch.tensor([1.0, 0.0]), rationale_ids=r["input_ids"],
              rationale_mask=r["attention_mask"], aux_only=True)  # fmt: skip
    # the distiller's rates: the new bridge at 1e-3, the encoder at 5e-5
    opt = torch.optim.AdamW([{"params": list(m.decoder.bridge.parameters()), "lr": 1e-3},
                             {"params": m.encoder_parameters(), "lr": 5e-5}])  # fmt: skip
    first = None
    for step in range(12):
        out = m(**enc, **kw)
        opt.zero_grad()
        out["loss"].backward()
        if step == 0:
            first = out["loss"].item()
            enc_grad = sum(p.grad.abs().sum() for p in m.encoder_parameters() if p.grad is not None)
            assert enc_grad > 0
            assert m.decoder.bridge.weight.grad.abs().sum() > 0
            assert all(p.grad is None for p in m.decoder.model.parameters())
        opt.step()
    assert out["loss"].item() < first - 1.0


def test_distiller_trains_with_smollm2_and_ships_only_the_cross_encoder(smol, tmp_path):
    """``RelevanceDistiller(decoder="smollm2")`` end to end: the rationales are tokenised for
    SmolLM2 and trained on with a finite loss, SmolLM2 stays as loaded, and the export is a
    plain cross-encoder folder (no SmolLM2 in it) that scores."""
    from relevance_fixtures import write_pairs

    from dualexpert.relevance import load_pairs, load_rationales
    from dualexpert.relevance.distill import RelevanceDistiller
    from dualexpert.relevance.scorer import RelevanceScorer

    p, r = write_pairs(tmp_path)
    pairs, rat = load_pairs(p), load_rationales(r)
    torch.manual_seed(0)
    d = RelevanceDistiller(decoder="smollm2", epochs=1, batch_size=8, seed=0, prior="none")
    d.fit(pairs, rat, progress=False, output_dir=tmp_path / "ckpt")
    dec = d.model.decoder
    assert isinstance(dec, PrefixLMDecoder)
    fresh = PrefixLMDecoder(smol, d.model.cross.config.hidden_size)
    assert torch.equal(dec.model.model.layers[0].self_attn.q_proj.weight,
                       fresh.model.model.layers[0].self_attn.q_proj.weight)  # fmt: skip
    losses = [h["loss"] for h in d.log_history if "loss" in h] or [d.log_history[-1]["train_loss"]]
    assert all(0.0 < float(x) < 20.0 for x in losses)
    d.save(tmp_path / "ce")
    assert not list((tmp_path / "ce").rglob("*.gguf"))
    scores = RelevanceScorer(tmp_path / "ce").predict_proba([(pairs[0].query, pairs[0].title)])
    assert 0.0 < float(scores[0]) < 1.0
