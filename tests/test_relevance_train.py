"""A short real distillation run, export, and the relevance CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from relevance_fixtures import write_pairs
from typer.testing import CliRunner

from dualexpert.cli import app
from dualexpert.models import resolve_encoder
from dualexpert.relevance import load_pairs, load_rationales
from dualexpert.relevance.distill import RelevanceDistiller
from dualexpert.relevance.scorer import RelevanceScorer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rel")
    p, r = write_pairs(folder)
    return folder, load_pairs(p), load_rationales(r)


def _losses(d):
    return [h["loss"] for h in d.log_history if "loss" in h]


def test_distillation_learns_and_exports(data, tmp_path):
    _, pairs, rat = data
    d = RelevanceDistiller(
        aux="decoder",
        epochs=6,
        batch_size=8,
        learning_rate=1e-4,
        logging_steps=1,
        seed=0,
        prior="none",  # the plain export; the residual one: tests/test_relevance_prior.py
    ).fit(pairs, rat, progress=False)
    losses = _losses(d)
    assert losses[-1] < losses[0]
    phases = [h.get("phase") for h in d.log_history if "loss" in h]
    assert phases[0] == "decoder-warmup" and phases[-1] == "joint"
    prob = d.predict_proba(pairs)
    d.save(tmp_path / "ce")
    # only the cross-encoder is exported, and it loads with sentence-transformers
    from sentence_transformers import CrossEncoder

    files = {f.name for f in (tmp_path / "ce").iterdir()}
    assert "model.safetensors" in files and not any("decoder" in f for f in files)
    ce = CrossEncoder(str(tmp_path / "ce"), device="cpu")
    st = ce.predict([(p.query, p.title) for p in pairs], convert_to_numpy=True)
    ours = RelevanceScorer(tmp_path / "ce").predict_proba(pairs)
    np.testing.assert_allclose(ours, prob, atol=1e-5)
    np.testing.assert_allclose(st, prob, atol=1e-5)
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    # plain CrossEncoder truncates at the training length too (the tokenizer carries it)
    assert ce.tokenizer.model_max_length == d.config.max_length
    long = [(p.query, p.title + " extra words" * 40) for p in pairs[:4]]
    ours_long = RelevanceScorer(tmp_path / "ce").predict_proba(long)
    np.testing.assert_allclose(ce.predict(long, convert_to_numpy=True), ours_long, atol=1e-5)
    # load returns the same class, ready to predict the same scores
    back = RelevanceDistiller.load(tmp_path / "ce")
    assert type(back) is RelevanceDistiller and back.config == d.config
    np.testing.assert_allclose(back.predict_proba(pairs), prob, atol=1e-5)


def test_tags_variant_learns_the_citations_and_ships_only_the_cross_encoder(data, tmp_path):
    _, pairs, rat = data
    d = RelevanceDistiller(
        aux="tags", lam=1.0, epochs=6, batch_size=8, learning_rate=1e-4, logging_steps=1,
        seed=0, prior="none",
    ).fit(pairs, rat, progress=False)  # fmt: skip
    logged = [h for h in d.log_history if "loss" in h]
    aux = [h["loss_aux"] for h in logged]
    # both parts are logged, and the token classifier learns which words the rationales cite
    assert all("loss_cls" in h for h in logged) and aux[0] > 0.5
    assert np.mean(aux[-3:]) < 0.8 * np.mean(aux[:3])
    d.save(tmp_path / "ce")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ce" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("tagger" in k for k in keys)
    np.testing.assert_allclose(
        RelevanceScorer(tmp_path / "ce").predict_proba(pairs), d.predict_proba(pairs), atol=1e-5
    )


def test_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(TypeError, match="epoch"):
        RelevanceDistiller(epoch=3)
    with pytest.raises(TypeError, match="epochs"):
        RelevanceDistiller(epochs="3")
    with pytest.raises(TypeError, match="aux"):
        RelevanceDistiller(aux="decodr")
    d = RelevanceDistiller(epochs=3)
    with pytest.raises(ValueError):
        d.config.lam = "a lot"  # checked on assignment too


def test_frozen_phase_trains_only_the_decoder(data):
    _, pairs, rat = data
    from transformers import AutoModelForSequenceClassification

    d = RelevanceDistiller(
        aux="decoder",
        epochs=1,
        batch_size=8,
        frozen_fraction=1.0,
        learning_rate=1e-3,
        seed=0,
        prior="none",
    ).fit(pairs, rat, progress=False)
    fresh = AutoModelForSequenceClassification.from_pretrained(
        resolve_encoder("minilm"), num_labels=1
    )
    trained = dict(d.model.cross.bert.named_parameters())
    for name, p in fresh.bert.named_parameters():
        assert np.allclose(p.detach().numpy(), trained[name].detach().numpy()), name
    # the decoder, initialised from the same MiniLM weights, did move
    dec = d.model.decoder.model.bert.encoder.layer[0].attention.self.query.weight
    ref = fresh.bert.encoder.layer[0].attention.self.query.weight
    assert not np.allclose(dec.detach().numpy(), ref.detach().numpy())


def test_named_t5_decoder_path(data, tmp_path):
    """A T5 model (here a tiny one built from its config) serves as the decoder."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    _, pairs, rat = data
    tok = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    cfg = T5Config(
        vocab_size=tok.vocab_size,
        d_model=64,
        d_ff=128,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    d = RelevanceDistiller(
        aux="decoder",
        decoder=str(tmp_path / "t5"),
        epochs=2,
        batch_size=8,
        logging_steps=1,
        prior="none",
    ).fit(pairs[:16], rat, progress=False)
    assert type(d.model.decoder).__name__ == "T5Decoder"
    assert all(np.isfinite(_losses(d)))


def test_embedding_variant_trains(data):
    _, pairs, rat = data
    d = RelevanceDistiller(
        aux="embedding", epochs=2, batch_size=8, logging_steps=1, prior="none"
    ).fit(pairs[:16], rat, progress=False)
    assert d.model.transform is not None and all(np.isfinite(_losses(d)))


def test_a_full_disk_while_distilling_is_an_oserror_that_says_how_to_resume(
    data, tmp_path, monkeypatch
):
    import errno

    import transformers
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", full)
    _, pairs, rat = data
    d = RelevanceDistiller(aux="embedding", epochs=1, batch_size=8, prior="none")
    with pytest.raises(OSError, match="--resume") as e:
        d.fit(pairs[:16], rat, output_dir=tmp_path / "ck", progress=False)
    assert e.value.errno == errno.ENOSPC and str(tmp_path / "ck") in str(e.value)


def test_cli_distill_evaluate_predict(data, tmp_path, monkeypatch):
    import dualexpert.relevance.distill as distill

    monkeypatch.setattr(distill, "MIN_HOLDOUT", 4)  # the 24-pair set holds out some queries
    folder, _, _ = data
    runner = CliRunner()
    out = tmp_path / "model"
    res = runner.invoke(
        app,
        [
            "distill",
            str(folder / "pairs.csv"),
            "--out",
            str(out),
            "--split",
            "all",
            "--rationales",
            str(folder / "rationales.jsonl"),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--correction-holdout",
            "0.4",
            "--unlabelled",
            str(folder / "pairs.csv"),
            "--warm-start-pairs",
            "20",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "config.json").exists()
    # the user sees the cross-encoder's weight and what the held-out queries measured
    said = " ".join(res.output.split())  # the console wraps long lines
    assert "stack: cross-encoder weighed" in said and "held-out queries (" in said
    assert "cross-encoder alone" in said
    assert "warm start: 20 given unlabelled pairs" in said
    assert (out / "prior" / "prior.json").is_file()  # the default: a correction of the prior
    res = runner.invoke(
        app,
        [
            "relevance",
            "evaluate",
            str(out),
            str(folder / "pairs.csv"),
            "--split",
            "all",
            "--json",
            str(tmp_path / "rep.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["n"] == 24 and 0.0 <= rep["roc_auc"] <= 1.0 and rep["pairs_per_second"] > 0
    scores = tmp_path / "scores.jsonl"
    args = ["relevance", "predict", str(out), str(folder / "pairs.csv"), "--out", str(scores)]
    assert runner.invoke(app, args).exit_code == 0
    lines = scores.read_text().splitlines()
    scores.write_text("\n".join(lines[:5]) + "\n")  # an interrupted run
    assert runner.invoke(app, args).exit_code == 0
    ids = [json.loads(x)["id"] for x in scores.read_text().splitlines()]
    assert sorted(ids) == sorted({json.loads(x)["id"] for x in lines}) and len(ids) == 24
    # a missing rationale file for the decoder variant is a clear error
    res = runner.invoke(app, ["distill", str(folder / "pairs.csv"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--rationales" in res.output
