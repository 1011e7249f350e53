"""The distilled general expert: a real MiniLM cross-encoder trained on the demo catalogue with
out-of-fold near-miss negatives, saved and loaded, used as ``DualExpert``'s general expert, and
cascaded to an LLM tier (scripted, for the flow) only when it is unsure."""

from __future__ import annotations

import dspy
import numpy as np
import pytest
import torch
from _dspy_fakes import fake_lm, tfidf_domain

from dualexpert.data import Product
from dualexpert.demo import split_demo
from dualexpert.domain.lexical import LexicalExpert
from dualexpert.general import GeneralExpert
from dualexpert.pipeline import DualExpert
from dualexpert.relevance.trainer import PairCollator
from dualexpert.reranker import CascadeExpert, CategoryReranker, RerankerExpert, pair_id
from dualexpert.reranker.estimator import hardest, log_softmax
from dualexpert.taxonomy import Taxonomy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo():
    train, test = split_demo(seed=0)
    return train, test, Taxonomy.from_paths([p.category for p in train])


@pytest.fixture(scope="module")
def fitted(demo, tmp_path_factory):
    train, _, tax = demo
    rr = CategoryReranker(
        epochs=3,
        negatives=2,
        max_products=60,
        learning_rate=1e-4,
        max_length=32,
        batch_size=8,
        seed=0,
    ).fit(train, tax, progress=False)
    folder = rr.save(tmp_path_factory.mktemp("rr") / "reranker")
    return rr, folder


def test_out_of_fold_near_misses_come_from_models_that_did_not_see_the_product(demo):
    train, _, tax = demo
    gold = [tax.by_path(p.category).id for p in train]
    texts = [p.text() for p in train]
    near, margins = LexicalExpert(calibrate_folds=0).out_of_fold_topk(texts, gold, k=3)
    assert len(near) == len(train) and margins.shape == (len(train), 3)
    assert all(len(row) == 3 and len(set(row)) == 3 for row in near)
    assert np.all(np.diff(margins, axis=1) <= 1e-6)  # best first
    # a leaf with one product: out of fold, no model saw that leaf, so it is never proposed
    # for its own product; an in-sample SVM proposes it first
    texts, gold = texts + ["zyxq gizmo unique"], gold + ["only-one"]
    near, _ = LexicalExpert(calibrate_folds=0).out_of_fold_topk(texts, gold, k=3)
    assert "only-one" not in near[-1]
    lex = LexicalExpert(calibrate_folds=0).fit(texts, gold)
    assert lex.classes_[int(lex.decision_function(texts[-1:]).argmax())] == "only-one"


def test_hardest_puts_wrong_then_narrow_first():
    near = [["a", "b"], ["b", "a"], ["a", "b"], ["a", "b"]]
    margins = np.array([[2.0, 0.0], [1.0, 0.9], [1.0, 0.8], [0.5, 0.45]])
    gold = ["a", "a", "a", "a"]
    assert hardest(near, margins, gold, 2) == [1, 3]  # the wrong one, then the narrowest gap
    assert hardest(near, margins, gold, None) == [0, 1, 2, 3]


def test_training_pairs_pair_each_product_with_its_leaf_and_near_misses(demo):
    train, _, tax = demo
    pairs = CategoryReranker(negatives=2, max_products=10).training_pairs(train, tax)
    assert len(pairs) == 30
    by_product: dict[str, list] = {}
    for p in pairs:
        by_product.setdefault(p.id.split("#")[0], []).append(p)
    assert len(by_product) == 10
    for pid, group in by_product.items():
        assert [p.label for p in group] == [1, 0, 0]
        assert len({p.title for p in group}) == 3
        assert group[0].id == pair_id(pid, group[0].id.split("#")[1])


def test_unlabelled_product_and_unknown_option_are_named(demo):
    _, _, tax = demo
    with pytest.raises(ValueError, match="product x1: field 'category'"):
        CategoryReranker().training_pairs([Product(id="x1", title="a kettle")], tax)
    with pytest.raises(TypeError, match="negativs"):
        CategoryReranker(negativs=3)


def test_reranker_learns_and_round_trips(fitted, demo):
    rr, folder = fitted
    train, _, tax = demo
    # on its training products, the gold leaf outscores the near-misses far above chance (1/3)
    pairs = rr.training_pairs(train, tax)
    logits = rr.distiller_.predict_logits(pairs)
    groups = logits.reshape(-1, 3)
    assert (groups.argmax(1) == 0).mean() > 0.6
    loaded = CategoryReranker.load(folder)
    assert loaded.config == rr.config
    again = loaded.distiller_.predict_logits(pairs[:12])
    np.testing.assert_allclose(again, logits[:12], atol=1e-4)


def test_reranker_expert_in_dual_expert(fitted, demo):
    rr, _ = fitted
    train, test, _ = demo
    expert = RerankerExpert(rr)
    de = DualExpert(tfidf_domain(train), expert, k=3, threshold=1.01, fusion_weight=1.0)
    pred = de(test[0])
    ids = [c["id"] for c in pred.candidates]
    assert pred.routed and pred.category in ids and pred.decision == "reranked"
    assert sorted(pred.ranking) == sorted(ids)
    assert abs(sum(np.exp(pred.llm_logprobs)) - 1) < 1e-6
    # the reranker alone decides the pick when fusion is off
    alone = DualExpert(tfidf_domain(train), expert, k=3, threshold=1.01)(test[0])
    best = int(np.argmax(alone.llm_logprobs))
    assert alone.category == ids[best]


class _CountingLLM(GeneralExpert):
    def __init__(self) -> None:
        super().__init__("zero_shot")
        self.calls = 0

    def forward(self, product, candidates):
        self.calls += 1
        return super().forward(product, candidates)


def test_cascade_asks_the_llm_only_when_the_reranker_is_unsure(fitted):
    rr, _ = fitted
    first = RerankerExpert(rr)
    cands = ["Garden Tools (Home & Garden › Garden)", "Coffee (Food & Grocery › Beverages)"]
    product = "Casa Verde lightweight rake"
    lm, _engine = fake_lm(choice=2)
    llm = _CountingLLM()
    with dspy.context(lm=lm):
        sure = CascadeExpert(first, llm, threshold=0.0)(product=product, candidates=cands)
        assert sure.tier == "first" and llm.calls == 0
        unsure = CascadeExpert(first, llm, threshold=1.0)(product=product, candidates=cands)
    assert unsure.tier == "last" and llm.calls == 1
    # the two tiers as a product of experts: the reranker's log-probabilities plus minus the
    # LLM's rank (it chose candidate 2, so candidate 1 is one rank down)
    want = log_softmax(np.asarray(sure.llm_logprobs) + np.array([-1.0, 0.0]))
    np.testing.assert_allclose(unsure.llm_logprobs, want, atol=1e-9)
    assert unsure.index == int(np.argmax(want))
    # an LLM that cannot answer leaves the reranker's answer, with the reason
    bad_lm, _ = fake_lm(choice=7)  # outside the candidates: never accepted
    with dspy.context(lm=bad_lm):
        kept = CascadeExpert(first, _CountingLLM(), threshold=1.0)(
            product=product, candidates=cands
        )
    assert kept.tier == "first" and kept.index == sure.index
    assert "last tier gave no answer" in kept.fallback_reason
    with pytest.raises(ValueError, match="threshold"):
        CascadeExpert(first, llm, threshold=1.5)


def test_partial_rationales_mask_pairs_without_one():
    from transformers import AutoTokenizer

    from dualexpert.models import resolve_encoder

    tok = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    batch = [
        {"query": "rake", "title": "Garden Tools", "label": 1, "rationale": "a rake is a tool"},
        {"query": "rake", "title": "Coffee", "label": 0, "rationale": None},
    ]
    out = PairCollator(tok, 32, tok, 16)(batch)
    assert out["rationale_mask"][0].sum() > 0 and out["rationale_mask"][1].sum() == 0
    assert isinstance(out["rationale_ids"], torch.Tensor)
    none = PairCollator(tok, 32, tok, 16)([{**batch[1]}])
    assert "rationale_ids" not in none
