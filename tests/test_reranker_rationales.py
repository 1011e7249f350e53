"""Rationales for the category reranker (issue 17, lever 1): requests built from the reranker's
own training pairs, written by a real local LLM (SmolLM2 through llama.cpp), resumable, and used
as the decoder's target when the reranker is fitted."""

from __future__ import annotations

import json

import dspy
import numpy as np
import pytest

from dualexpert.demo import split_demo
from dualexpert.lm import local_lm
from dualexpert.relevance import load_rationales
from dualexpert.reranker import CategoryReranker, pair_id
from dualexpert.reranker.rationales import (
    CategoryRationaleWriter,
    rationale_requests,
    write_category_rationales,
)
from dualexpert.taxonomy import Taxonomy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo():
    train, _ = split_demo(seed=0)
    return train, Taxonomy.from_paths([p.category for p in train])


@pytest.fixture(scope="module")
def smollm():
    return local_lm("smollm2", max_tokens=64, cache=False)


def test_requests_are_the_training_products_with_their_near_misses(demo):
    train, tax = demo
    rr = CategoryReranker(negatives=2, max_products=12)
    pairs = rr.training_pairs(train, tax)
    reqs = rationale_requests(rr, train, tax)
    assert len(reqs) == 12
    positives = [p for p in pairs if p.label == 1]
    assert [r.id for r in reqs] == [p.id for p in positives]
    by_id = {p.id: p for p in train}
    for rq in reqs:
        product_id, category_id = rq.id.rsplit("#", 1)
        assert rq.id == pair_id(product_id, category_id)
        assert rq.product == by_id[product_id].text()
        assert rq.category == tax.represent(category_id, "descriptive")
        assert len(rq.near_misses) == 2 and rq.category not in rq.near_misses
        # the near-misses are exactly the product's negative pairs
        assert {p.title for p in pairs if p.label == 0 and p.query == rq.product} >= set(
            rq.near_misses
        )


def test_rationales_are_written_resumed_and_conditioned_on_the_label(smollm, demo, tmp_path):
    train, tax = demo
    reqs = rationale_requests(CategoryReranker(negatives=2, max_products=3), train, tax)
    out = tmp_path / "rationales.jsonl"
    writer = CategoryRationaleWriter(max_tokens=48, max_product_chars=40)
    seen = {"n": 0}

    def stop_after_one(n: int) -> None:
        seen["n"] += n
        if seen["n"] == 1:
            raise KeyboardInterrupt

    with dspy.context(lm=smollm), pytest.raises(KeyboardInterrupt):
        write_category_rationales(reqs, out, writer, progress=stop_after_one)
    assert len(out.read_text().splitlines()) == 1
    # the prompt carried the known category, the near-misses, and the product cut to 40 chars
    first = reqs[0]
    asked = [h["messages"][-1]["content"] for h in smollm.history]  # the request, after demos
    sent = next(m for m in asked if first.product[:40] in m)
    assert first.category in sent and all(m in sent for m in first.near_misses)
    if len(first.product) > 40:
        assert first.product not in sent
    with dspy.context(lm=smollm):
        totals = write_category_rationales(reqs, out, writer)
    assert totals["skipped"] == 1 and totals["written"] + totals["failed"] == 2
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [r.id for r in reqs][: len(rows)]
    assert all(len(r["rationale"].split()) >= 3 for r in rows)


def test_reranker_trains_on_the_rationales_and_rejects_ones_for_other_pairs(demo, tmp_path):
    train, tax = demo
    opts = dict(
        negatives=2,
        max_products=16,
        max_length=32,
        batch_size=8,
        epochs=2,
        seed=0,
        logging_steps=1,
    )
    reqs = rationale_requests(CategoryReranker(**opts), train, tax)

    def fitted(template: str, **extra) -> CategoryReranker:
        # hand-written stand-ins: this test is about keys and training, not the LLM's prose
        out = tmp_path / f"{len(template)}.jsonl"
        rows = [{"id": r.id, "rationale": template.format(r.category)} for r in reqs]
        out.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return CategoryReranker(aux="decoder", **opts, **extra).fit(
            train, tax, rationales=load_rationales(out), progress=False
        )

    def phases(rr: CategoryReranker) -> set:
        return {h.get("phase") for h in rr.distiller_.log_history if "loss" in h}

    with pytest.raises(ValueError, match="none of the 1 rationales is keyed"):
        CategoryReranker(aux="decoder", **opts).fit(train, tax, rationales={"p#c": "x"})
    a = fitted("It is a kind of {}.")
    b = fitted("This product is sold to people who shop for {} and nothing else.")
    texts = [p.text() for p in train[:4]]
    cands = [[a.candidate_text(c.id) for c in tax.leaves[:3]]] * 4
    sa, sb = a.score(texts, cands), b.score(texts, cands)
    # same seed and data: only the rationales differ, and they change the cross-encoder
    assert any(not np.allclose(x, y, atol=1e-6) for x, y in zip(sa, sb, strict=True))
    again = CategoryReranker.load(a.save(tmp_path / "rr"))
    np.testing.assert_allclose(again.score(texts, cands)[0], sa[0], atol=1e-5)
    # the decoder-only warm-up is on by default and can be switched off
    assert "decoder-warmup" in phases(a)
    assert phases(fitted("It is a kind of {}.", decoder_warmup=False)) == {"joint"}
