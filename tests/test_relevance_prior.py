"""The relevance prior (bi-encoder cosine + lexical overlap) and the residual cross-encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from relevance_fixtures import write_pairs
from sklearn.metrics import roc_auc_score

from dualexpert.evaluation.baselines import BiEncoderCosine, LexicalRelevanceLR
from dualexpert.models import resolve_encoder
from dualexpert.relevance import load_pairs
from dualexpert.relevance.distill import RelevanceDistiller
from dualexpert.relevance.model import RationaleDistillModel
from dualexpert.relevance.prior import RelevancePrior
from dualexpert.relevance.scorer import RelevanceScorer


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    p, _ = write_pairs(tmp_path_factory.mktemp("prior"))
    return load_pairs(p)


@pytest.fixture(scope="module")
def prior(pairs):
    return RelevancePrior().fit(pairs)


def _auc(pairs, prob):
    return roc_auc_score([p.label for p in pairs], prob)


def test_prior_features_and_ranking(pairs, prior):
    X = prior.transform(pairs)
    # cosine; 2 TF-IDF cosines, Jaccard, cover, whole; stem cover, first, last, 2 lengths
    assert X.shape == (len(pairs), 11)
    # the cosine column is the bi-encoder's, which ranks these pairs well with no training
    cos = BiEncoderCosine().predict_proba(pairs)
    np.testing.assert_allclose(np.clip(X[:, 0], 0, 1), cos, atol=1e-5)
    assert _auc(pairs, cos) > 0.9
    assert _auc(pairs, prior.predict_proba(pairs)) > 0.9
    logits = prior.decision_function(pairs)
    np.testing.assert_allclose(logits, X @ prior.coef_ + prior.intercept_)
    np.testing.assert_allclose(prior.train_decision_, logits)  # kept by fit, not recomputed
    # text tuples and pair objects give the same scores
    np.testing.assert_allclose(prior.decision_function([(p.query, p.title) for p in pairs]), logits)


def test_prior_save_load_round_trip_without_pickle(pairs, prior, tmp_path):
    prior.save(tmp_path / "p")
    names = {f.name for f in (tmp_path / "p").iterdir()}
    assert {"prior.json", "prior.safetensors", "bi_encoder"} <= names
    assert not any(n.endswith((".pkl", ".pickle", ".joblib")) for n in names)
    back = RelevancePrior.load(tmp_path / "p")
    np.testing.assert_allclose(
        back.decision_function(pairs), prior.decision_function(pairs), atol=1e-6
    )


def test_lexical_baseline_is_the_prior_without_cosine(pairs):
    lex = LexicalRelevanceLR().fit(pairs)
    assert lex.features == ("lexical",) and lex.transform(pairs).shape[1] == 5
    assert lex.bi_encoder_ is None  # no encoder is loaded for lexical features


def test_prior_errors(pairs, tmp_path):
    with pytest.raises(ValueError, match="subset of"):
        RelevancePrior(("cosine", "bm25"))
    with pytest.raises(ValueError, match="'\\+'-joined subset"):
        RelevanceDistiller(prior="cosine+bm25")
    with pytest.raises(RuntimeError, match="fit or load"):
        RelevancePrior().decision_function(pairs)
    with pytest.raises(ValueError, match="both labels"):
        RelevancePrior(("lexical",)).fit([p for p in pairs if p.label == 1])
    with pytest.raises(FileNotFoundError, match="prior.json"):
        RelevancePrior.load(tmp_path)


def test_overlap_features_by_hand():
    X = RelevancePrior._overlap([("garden hoses", "Flexzilla 50 ft. Garden Hose"), ("a b", "")])
    # "garden" and "hoses" match on their first four letters; lengths 2 and 5 tokens
    np.testing.assert_allclose(X[0], [1.0, 1.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(X[1], [0.0, 0.0, 0.0, 2.0, 0.0])


def test_residual_model_starts_at_the_prior():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    m = RationaleDistillModel(resolve_encoder("minilm"), aux="none", residual=True).eval()
    enc = dict(tok(["drill", "hose"], ["DeWalt drill", "toilet seat"], padding=True,
                   return_tensors="pt"))  # fmt: skip
    prior = torch.tensor([1.5, -2.0])
    out = m(**enc, prior_logit=prior, labels=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out["logits"], prior)  # zero head: the prior alone
    out["loss"].backward()
    head = [p for n, p in m.cross.named_parameters() if n.startswith("classifier")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head)


def test_residual_head_init_decides_whether_the_encoder_learns_from_the_first_step():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    enc = dict(tok(["drill", "hose"], ["DeWalt drill", "toilet seat"], padding=True,
                   return_tensors="pt"))  # fmt: skip
    prior, labels = torch.tensor([1.5, -2.0]), torch.tensor([0.0, 1.0])
    grads = {}
    for init in ("zero", "normal"):
        torch.manual_seed(0)
        m = RationaleDistillModel(
            resolve_encoder("minilm"), aux="none", residual=True, head_init=init
        ).eval()
        out = m(**enc, prior_logit=prior, labels=labels)
        correction = (out["logits"] - prior).abs().max().item()
        out["loss"].backward()
        grads[init] = sum(p.grad.abs().sum().item() for p in m.encoder_parameters()
                          if p.grad is not None)  # fmt: skip
        # "normal": a small random head, so the start is the prior within a few hundredths
        assert correction == 0.0 if init == "zero" else 0.0 < correction < 0.2
    assert grads["zero"] == 0.0  # a zero head passes no gradient back to the encoder
    assert grads["normal"] > 0.0
    with pytest.raises(ValueError, match="head_init"):
        RationaleDistillModel(resolve_encoder("minilm"), aux="none", head_init="xavier")


@pytest.mark.slow
def test_residual_distiller_learns_exports_and_scores_the_same(pairs, tmp_path):
    d = RelevanceDistiller(
        aux="none",
        prior="cosine+lexical+overlap",
        epochs=4,
        batch_size=8,
        learning_rate=1e-4,
        seed=0,
    ).fit(pairs, progress=False)
    prob = d.predict_proba(pairs)
    assert _auc(pairs, prob) > 0.9
    correction = d.score_texts([(p.query, p.title) for p in pairs]) - d.prior_.decision_function(
        pairs
    )
    # the cross-encoder learned a correction of some size (its zero-initialised head at the
    # encoder's learning rate stayed within +-0.002 logits: a cross-encoder that did nothing)
    assert correction.std() > 0.02  # (0.043 with the default head rate; 0.0014 at 1x)
    d.save(tmp_path / "ce")
    assert (tmp_path / "ce" / "prior" / "prior.json").is_file()
    scorer = RelevanceScorer(tmp_path / "ce")
    np.testing.assert_allclose(scorer.predict_proba(pairs), prob, atol=1e-5)
    # plain CrossEncoder loads the folder and gives the correction alone
    from scipy.special import expit
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(tmp_path / "ce"), device="cpu")
    st = ce.predict([(p.query, p.title) for p in pairs], convert_to_numpy=True)
    np.testing.assert_allclose(st, expit(correction), atol=1e-5)
    back = RelevanceDistiller.load(tmp_path / "ce")
    np.testing.assert_allclose(back.predict_proba(pairs), prob, atol=1e-5)
    # a changed part (here the prior's coefficients, negated) is refused by the scorer too
    prior = tmp_path / "ce" / "prior" / "prior.json"
    meta = json.loads(prior.read_text())
    prior.write_text(json.dumps({**meta, "coef": [-c for c in meta["coef"]]}))
    with pytest.raises(ValueError, match="prior.json"):
        RelevanceScorer(tmp_path / "ce")


def test_knn_embedding_baseline_runs_and_ranks():
    """The categorisation k-NN baseline (same module, same encoder loading as the prior)."""
    from dualexpert.demo import split_demo
    from dualexpert.evaluation.baselines import KnnEmbeddingRanker

    train, held = split_demo(seed=0)
    knn = KnnEmbeddingRanker(neighbours=5).fit(train)
    top = knn.predict_topk(held[:40], k=3)
    assert all(len(c) == 3 for c in top)
    hits = sum(
        p.category in [c.path for c in cands] for p, cands in zip(held[:40], top, strict=True)
    )
    assert hits >= 24  # far above chance on the demo catalogue


def test_hold_out_takes_whole_queries_and_needs_enough_pairs(pairs):
    from dualexpert.relevance.data import RelevancePair, split_by_query

    many = [
        RelevancePair(id=f"{q}-{k}", query=f"query {q}", title=f"title {q} {k}", label=k)
        for q in range(150)
        for k in (0, 1)
    ]
    # the train side of a split by query with the distiller's own seed still gives a hold-out
    many, _ = split_by_query(many + [p.model_copy(update={"query": p.query + "!"}) for p in many],
                             0.5, seed=3)  # fmt: skip
    d = RelevanceDistiller(aux="none", correction_holdout=0.25, seed=3)
    train, held = d._hold_out(many)
    assert len(train) + len(held) == len(many) and len(held) >= 50
    assert not {p.query for p in train} & {p.query for p in held}  # whole queries
    assert {p.label for p in held} == {0, 1}
    # 24 pairs cannot give 50 held-out ones: all of them train, the correction stays as trained
    assert d._hold_out(pairs) == (pairs, [])
    # no prior, nothing to scale
    assert RelevanceDistiller(aux="none", prior="none")._hold_out(many) == (many, [])


@pytest.mark.slow
def test_correction_is_scaled_on_held_out_pairs_and_dropped_when_it_hurts(pairs, tmp_path):
    import copy

    d = RelevanceDistiller(aux="none", epochs=4, batch_size=8, learning_rate=1e-4, seed=0).fit(
        pairs, progress=False
    )
    assert d.correction_scale_ == 1.0  # 24 pairs: nothing held out
    texts = [(p.query, p.title) for p in pairs]
    z = d.prior_.decision_function(pairs)
    c = d.score_texts(texts) - z
    # labels the correction agrees with: it is kept (scaled by a > 0) and exported scaled
    agree = copy.deepcopy(d)
    agree._scale_correction(pairs)
    a = agree.correction_scale_
    assert 0.0 < a <= 1.0
    np.testing.assert_allclose(agree.score_texts(texts), z + a * c, atol=1e-4)
    h = agree.holdout_  # what the held-out pairs measured, saved with the model
    assert h["pairs"] == len(pairs) and h["queries"] == len({p.query.lower() for p in pairs})
    assert h["log_loss"] <= min(h["log_loss_prior"], h["log_loss_unscaled"]) + 1e-9
    y = [p.label for p in pairs]
    assert h["roc_auc_prior"] == pytest.approx(roc_auc_score(y, z))
    assert h["roc_auc"] == pytest.approx(roc_auc_score(y, z + a * c))
    agree.save(tmp_path / "ce")
    loaded = RelevanceDistiller.load(tmp_path / "ce")
    assert loaded.correction_scale_ == pytest.approx(a) and loaded.holdout_ == pytest.approx(h)
    np.testing.assert_allclose(
        RelevanceScorer(tmp_path / "ce").predict_proba(pairs), agree.predict_proba(pairs), atol=1e-5
    )
    # labels it contradicts (relevant where it lowers the prior's score): dropped, the prior alone
    flipped = [p.model_copy(update={"label": int(ci < 0)}) for p, ci in zip(pairs, c, strict=True)]
    assert {p.label for p in flipped} == {0, 1}
    d._scale_correction(flipped)
    assert d.correction_scale_ == 0.0
    np.testing.assert_allclose(d.score_texts(texts), z, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("combine", ["residual", "stack"])
def test_fit_trains_without_the_held_out_queries_then_refits_the_prior_on_all(
    pairs, monkeypatch, combine
):
    import dualexpert.relevance.distill as distill

    monkeypatch.setattr(distill, "MIN_HOLDOUT", 4)  # the 24-pair set as if it were large
    d = RelevanceDistiller(aux="none", epochs=2, batch_size=4, seed=1, correction_holdout=0.4,
                           combine=combine)  # fmt: skip
    train, held = d._hold_out(pairs)
    assert len(held) >= 4
    d.fit(pairs, progress=False)
    assert d.combine_ == combine
    # the cross-encoder saw only the training queries: 2 epochs of ceil(len(train) / 4) steps
    assert d.log_history[-1]["step"] == 2 * -(-len(train) // 4) < 2 * -(-len(pairs) // 4)
    # the shipped prior is the one fitted on every pair (stacked: with its weight and the bias)
    full = RelevancePrior().fit(pairs).decision_function(pairs)
    if combine == "residual":
        assert 0.0 <= d.correction_scale_ <= 1.0
    else:
        h = d.holdout_
        assert h["cross_weight"] == d.correction_scale_ >= 0.0 and h["prior_weight"] >= 0.0
        full = h["prior_weight"] * full + h["bias"]
    np.testing.assert_allclose(d.prior_.decision_function(pairs), full, atol=1e-6)


def test_stack_falls_back_to_the_residual_when_too_few_pairs_are_held_out(pairs):
    d = RelevanceDistiller(aux="none", epochs=1, batch_size=8, seed=0)
    assert d.config.combine == "stack"
    d.fit(pairs[:12], progress=False)  # nothing can be held out
    assert d.combine_ == "residual" and d.holdout_ == {}


@pytest.mark.slow
def test_stack_weighs_the_cross_encoder_against_the_prior_and_drops_it_when_it_hurts(
    pairs, prior, tmp_path
):
    import copy

    from scipy.special import expit
    from sentence_transformers import CrossEncoder

    # a cross-encoder trained alone, as "stack" trains it; then weighed on (here) the same pairs
    plain = RelevanceDistiller(aux="none", prior="none", epochs=4, batch_size=8,
                               learning_rate=1e-4, seed=0).fit(pairs, progress=False)  # fmt: skip
    texts = [(p.query, p.title) for p in pairs]
    c, z = plain._cross_logits(texts), prior.decision_function(pairs)
    # the ridge shrinks the cross-encoder's weight: with 24 held-out pairs, to nothing here
    shrunk = copy.deepcopy(plain)
    shrunk.prior_, shrunk.combine_ = copy.deepcopy(prior), "stack"
    shrunk._stack(pairs)
    agree = copy.deepcopy(plain)
    agree.prior_, agree.combine_ = copy.deepcopy(prior), "stack"
    b0, b1 = agree._stack(pairs, ridge=0.0)
    h, y = agree.holdout_, [p.label for p in pairs]
    b2 = agree.correction_scale_
    assert 0.0 <= shrunk.correction_scale_ < b2
    assert b2 == h["cross_weight"] > 0.0 and (b0, b1) == (h["bias"], h["prior_weight"])
    assert h["log_loss"] <= h["log_loss_prior"] + 1e-9
    assert h["roc_auc_cross"] == pytest.approx(roc_auc_score(y, c))
    assert h["roc_auc"] == pytest.approx(roc_auc_score(y, b0 + b1 * z + b2 * c))
    # the weight is folded into the exported head: plain CrossEncoder gives b2 * its logit
    np.testing.assert_allclose(agree._cross_logits(texts), b2 * c, atol=1e-4)
    agree.prior_.rescale(b1, b0)
    np.testing.assert_allclose(agree.prior_.decision_function(pairs), b1 * z + b0, atol=1e-6)
    agree.save(tmp_path / "ce")
    loaded = RelevanceDistiller.load(tmp_path / "ce")
    assert loaded.combine_ == "stack" and loaded.holdout_ == pytest.approx(h)
    prob = agree.predict_proba(pairs)
    np.testing.assert_allclose(prob, expit(b0 + b1 * z + b2 * c), atol=1e-4)
    np.testing.assert_allclose(RelevanceScorer(tmp_path / "ce").predict_proba(pairs), prob,
                               atol=1e-5)  # fmt: skip
    st = CrossEncoder(str(tmp_path / "ce"), device="cpu").predict(texts, convert_to_numpy=True)
    np.testing.assert_allclose(st, expit(b2 * c), atol=1e-4)
    # labels the cross-encoder contradicts: its weight is 0
    flipped = [p.model_copy(update={"label": int(ci < np.median(c))})
               for p, ci in zip(pairs, c, strict=True)]  # fmt: skip
    against = copy.deepcopy(plain)
    against.prior_, against.combine_ = copy.deepcopy(prior), "stack"
    against._stack(flipped)
    assert against.correction_scale_ == 0.0
    np.testing.assert_allclose(against._cross_logits(texts), 0.0, atol=1e-6)
