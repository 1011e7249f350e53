"""int8 inference: which layers are quantised, and that 8-bit activations beat torch's default."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from dualexpert.domain.quantize import FullRangeDynamicLinear, quantize_int8

TEXTS = [
    "stainless steel garden hose nozzle with 8 spray patterns",
    "organic dark roast espresso coffee beans 1kg",
    "men's trail running shoes waterproof size 44",
    "USB-C charging cable 2m braided",
    "children's picture book about dinosaurs",
    "cordless drill 18V with two batteries and case",
] * 4


@pytest.fixture(scope="module")
def classifier():
    from transformers import AutoModel, AutoTokenizer

    from dualexpert.domain.model import EncoderClassifier
    from dualexpert.models import resolve_encoder

    path = resolve_encoder("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    model = EncoderClassifier(AutoModel.from_pretrained(path), 6).eval()
    model.init_head_from_labels(tok, ["garden", "coffee", "shoes", "cables", "books", "tools"])
    return model, tok(TEXTS, padding=True, return_tensors="pt")


def _logits(model: nn.Module, enc) -> torch.Tensor:
    with torch.inference_mode():
        return model(**enc)["logits"]


def test_first_feed_forward_outputs_stay_fp32_and_the_rest_is_int8(classifier):
    model, _ = classifier
    q = quantize_int8(model)
    kinds = {name: type(m) for name, m in q.named_modules()}
    assert kinds["encoder.encoder.layer.0.output.dense"] is nn.Linear
    assert kinds["encoder.encoder.layer.1.output.dense"] is nn.Linear
    for name in (
        "encoder.encoder.layer.0.attention.self.query",
        "encoder.encoder.layer.0.attention.output.dense",
        "encoder.encoder.layer.2.output.dense",
        "encoder.encoder.layer.5.output.dense",
        "encoder.encoder.layer.5.intermediate.dense",
        "head",
    ):
        assert kinds[name] is FullRangeDynamicLinear, name
    assert type(model.head) is nn.Linear  # the fp32 model is left as it was
    whole = quantize_int8(model, keep_fp32=None)
    assert not any(type(m) is nn.Linear for m in whole.modules())


def test_full_range_activations_are_closer_to_fp32_than_torch_default(classifier):
    model, enc = classifier
    ref = _logits(model, enc)
    ours = _logits(quantize_int8(model, keep_fp32=None), enc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        )
    theirs = _logits(default, enc)
    err_ours = (ours - ref).abs().mean().item()
    err_theirs = (theirs - ref).abs().mean().item()
    assert err_ours < err_theirs
    assert torch.equal(ours.argmax(1), ref.argmax(1))
    # keeping the first feed-forward outputs in fp32 brings it closer still
    mixed = _logits(quantize_int8(model), enc)
    assert (mixed - ref).abs().mean().item() < err_ours
