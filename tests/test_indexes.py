"""The FAISS summary index: diverse sampling, build (resumable), save/load, search, update."""

from __future__ import annotations

import dspy
import numpy as np
from dspy.utils.dummies import DummyLM
from dualexpert.indexes import CategorySummariser, SummaryIndex, diverse_sample

from dualexpert.data import load_catalogue
from dualexpert.taxonomy import Taxonomy


def test_diverse_sample_spreads_over_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 10
    x = np.concatenate([c + rng.normal(0, 0.1, (25, 8)) for c in centres]).astype("float32")
    picked = diverse_sample(x, 5, seed=0)
    assert len(picked) == len(set(picked)) == 5
    assert len({i // 25 for i in picked}) == 4  # every cluster is represented
    assert diverse_sample(x[:3], 5) == [0, 1, 2]


class CountingSummariser:
    def __init__(self):
        self.calls = []

    def __call__(self, category, path, examples):
        self.calls.append((category, list(examples)))
        return dspy.Prediction(summary=f"{category}: products such as {', '.join(examples[:2])}")


def test_build_search_update_round_trip(tmp_path, demo_catalogue):
    cat = load_catalogue(demo_catalogue)
    tax = Taxonomy.from_paths(cat.paths)
    extra = Taxonomy.from_paths(cat.paths + [("Electronics", "Audio", "Turntables")])
    summ = CountingSummariser()
    idx = SummaryIndex().build(
        extra, cat.products, summ, n_examples=4, journal=tmp_path / "j.jsonl"
    )
    assert len(idx) == len(tax.leaves) + 1
    by_name = dict(summ.calls)
    assert len(by_name["Coffee (Food & Grocery › Beverages)"]) == 4
    assert by_name["Turntables (Electronics › Audio)"] == []  # no data: written from name/path
    hit = idx.search("espresso beans dark roast", k=3)
    assert hit[0][0] == "Food & Grocery > Beverages > Coffee"
    idx.save(tmp_path / "ix")
    back = SummaryIndex.load(tmp_path / "ix")
    assert back.summaries == idx.summaries
    assert back.search("espresso beans dark roast", k=3)[0][0] == hit[0][0]
    # update one category: its vector moves
    back.update("Electronics > Audio > Turntables", "Record players and vinyl turntables.")
    assert back.search("vinyl record player", k=1)[0][0] == "Electronics > Audio > Turntables"
    assert len(back) == len(idx)
    # a rerun on the same journal writes nothing new
    again = CountingSummariser()
    SummaryIndex().build(extra, cat.products, again, journal=tmp_path / "j.jsonl")
    assert again.calls == []


def test_summariser_program_with_dummy_lm():
    lm = DummyLM([{"summary": "Coffee beans and ground coffee for brewing."}])
    with dspy.context(lm=lm):
        pred = CategorySummariser()(category="Coffee", path="Food > Coffee", examples=["beans"])
    assert pred.summary.startswith("Coffee beans")
    assert "- beans" in lm.history[-1]["messages"][-1]["content"]


def test_summariser_caps_tokens_and_ends_on_a_sentence():
    lm = DummyLM([{"summary": "Coffee beans and ground coffee. Also tea and cocoa for the"}])
    with dspy.context(lm=lm):
        pred = CategorySummariser(max_tokens=40)(category="Coffee", path="Food > Coffee")
    assert pred.summary == "Coffee beans and ground coffee."  # a cut-off tail is dropped
    assert lm.history[-1]["kwargs"]["max_tokens"] == 40
    assert "(no sample products)" in lm.history[-1]["messages"][-1]["content"]
