"""The stacked cross-encoder's warm start: it first learns the prior's probabilities on
unlabelled pairs (the user's, or the training pairs recombined), then the labels."""

from __future__ import annotations

import types

import numpy as np
import pytest
from relevance_fixtures import write_pairs
from scipy.stats import spearmanr
from transformers import AutoTokenizer

from dualexpert.models import resolve_encoder
from dualexpert.relevance import load_pairs
from dualexpert.relevance.distill import WARM, RelevanceDistiller
from dualexpert.relevance.prior import RelevancePrior
from dualexpert.relevance.warm_start import given_pairs, recombined_pairs, unique_texts


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    p, _ = write_pairs(tmp_path_factory.mktemp("warm"))
    return load_pairs(p)


class _Encoder:
    """Embeddings by hand: query i and title j are close when j == i or j == i + 1."""

    def __init__(self, texts: dict[str, np.ndarray]):
        self.texts = texts

    def encode(self, items, **_):
        return np.stack([self.texts[t] for t in items])


def _pair(q: str, t: str):
    return types.SimpleNamespace(query=q, title=t)


def test_recombined_pairs_keep_the_real_ones_then_add_each_querys_nearest_titles():
    eye = np.eye(4)
    vec = {f"q{i}": eye[i] for i in range(4)}
    # title j lies at 0.8 of axis j and 0.6 of axis j - 1: nearest to query j, then query j - 1
    vec.update({f"t{j}": 0.8 * eye[j] + 0.6 * eye[(j - 1) % 4] for j in range(4)})
    real = [_pair(f"q{i}", f"t{i}") for i in range(4)] + [_pair(" q0 ", "t0")]
    assert unique_texts(real) == [(f"q{i}", f"t{i}") for i in range(4)]  # trimmed, deduplicated
    out = recombined_pairs(real, 8, _Encoder(vec), seed=0)
    assert out[:4] == [(f"q{i}", f"t{i}") for i in range(4)]
    assert len(out) == len(set(out)) == 8
    # each query's second-nearest title (its own is already there): t(i + 1)
    assert set(out[4:]) == {(f"q{i}", f"t{(i + 1) % 4}") for i in range(4)}
    # enough real pairs: a seeded sample of them, no query meets another's title
    assert recombined_pairs(real, 3, _Encoder(vec), seed=1) == given_pairs(real, 3, seed=1)
    assert len(recombined_pairs(real, 100, _Encoder(vec))) == 16  # every query x title


def test_given_pairs_are_a_seeded_sample_not_the_first_rows():
    log = [_pair(f"q{i // 10}", f"t{i}") for i in range(1000)]  # sorted by query
    got = given_pairs(log, 50, seed=3)
    assert len(set(got)) == 50 and got == given_pairs(log, 50, seed=3)
    assert len({q for q, _ in got}) > 30  # many queries, not the first five
    assert got == sorted(got, key=lambda t: int(t[1][1:]))  # in file order
    assert given_pairs(log[:20], 50) == unique_texts(log[:20])


def test_warm_start_learns_the_prior_then_the_stack_records_it(pairs, tmp_path, monkeypatch):
    import dualexpert.relevance.distill as distill

    monkeypatch.setattr(distill, "MIN_HOLDOUT", 4)  # the 24-pair set as if it were large
    kw = dict(aux="none", epochs=1, batch_size=8, seed=0, correction_holdout=0.4,
              warm_start_pairs=40, warm_start_epochs=3, learning_rate=2e-4)  # fmt: skip
    d = RelevanceDistiller(**kw)
    train, _ = d._hold_out(pairs)
    prior = RelevancePrior().fit(train)
    d.prior_ = prior
    d.tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    cross = d._warm_start(train, None, tmp_path / "w", resume=False, progress=False)
    assert d.warm_start_["source"] == "recombined" and d.warm_start_["pairs"] == 40
    # the warm-started cross-encoder orders the recombined pairs as the prior does
    texts = recombined_pairs(train, 40, prior._bi_encoder(), seed=0)
    d.cross_ = cross.eval()
    rho = spearmanr(d._cross_logits(texts), prior.decision_function(texts)).statistic
    assert rho > 0.6
    # the whole fit: the warm start in its own checkpoint folder, recorded in the saved model
    d = RelevanceDistiller(**kw).fit(pairs, output_dir=tmp_path / "ck", progress=False)
    assert d.combine_ == "stack" and d.warm_start_["pairs"] == 40
    assert (tmp_path / "ck" / WARM / "run.json").is_file()
    d.save(tmp_path / "m")
    assert RelevanceDistiller.load(tmp_path / "m").warm_start_ == d.warm_start_
    # resumed: both stages come back from their checkpoints (the same model)
    again = RelevanceDistiller(**kw).fit(
        pairs, output_dir=tmp_path / "ck", progress=False, resume=True
    )
    np.testing.assert_allclose(again.predict_proba(pairs), d.predict_proba(pairs), atol=1e-5)


def test_warm_start_uses_the_given_unlabelled_pairs_and_can_be_switched_off(pairs, monkeypatch):
    import dualexpert.relevance.distill as distill

    monkeypatch.setattr(distill, "MIN_HOLDOUT", 4)
    kw = dict(aux="none", epochs=1, batch_size=8, seed=0, correction_holdout=0.4)
    logs = [_pair("cordless drill", "Makita 18V Drill"), _pair("hose", "Garden Hose Reel"),
            _pair("hose", "Garden Hose Reel"), _pair("", "no query")]  # fmt: skip
    d = RelevanceDistiller(**kw).fit(pairs, progress=False, unlabelled=logs)
    assert d.warm_start_["source"] == "given" and d.warm_start_["pairs"] == 2
    with pytest.raises(ValueError, match="no unlabelled pair"):
        RelevanceDistiller(**kw).fit(pairs, progress=False, unlabelled=logs[3:])
    off = RelevanceDistiller(**kw, warm_start="none").fit(pairs, progress=False)
    assert off.combine_ == "stack" and off.warm_start_ == {}
    with pytest.raises(TypeError, match="warm_start_pairs"):
        RelevanceDistiller(warm_start_pairs=0)
