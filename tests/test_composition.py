"""DualExpert and GeneralExpert composed the DSPy way: as tools inside dspy.ReAct, inside a user's
Module, saved and loaded with DSPy's own save/load, in thread-parallel batches and async calls.
The categoriser runs on a real local LLM (SmolLM2); the domain expert is a TF-IDF ranker."""

from __future__ import annotations

import asyncio

import dspy
import pytest
from _dspy_fakes import fake_lm, tfidf_domain

from dualexpert.demo import split_demo
from dualexpert.general import GeneralExpert
from dualexpert.pipeline import DualExpert
from dualexpert.tools import categoriser_tool, general_expert_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from dualexpert.lm import local_lm

    return local_lm("smollm2", max_tokens=96, cache=False)


@pytest.fixture(scope="module")
def data():
    train, test = split_demo(seed=0)
    return tfidf_domain(train), test


def ids(pred) -> list[str]:
    return [c["id"] for c in pred.candidates]


def routable(domain, products, n: int) -> list:
    """The first ``n`` products with at least two candidates (a single one never goes to the
    LLM, whatever the threshold)."""
    return [p for p in products if len(domain.predict_topk([p], k=3)[0]) >= 2][:n]


def test_categoriser_and_general_expert_as_react_tools(smollm, data):
    domain, test = data
    de = DualExpert(domain, GeneralExpert(), k=3, threshold=1.01)
    p = test[0]
    cands = ["Coffee (Food › Beverages)", "Laptops (Electronics › Computing)"]
    # a scripted LM drives the agent's steps (SmolLM2 cannot hold the ReAct format); the tools
    # call the real LLM
    agent_lm, engine = fake_lm(
        script=[
            {
                "next_thought": "file it",
                "next_tool_name": "categorise_product",
                "next_tool_args": {"title": p.title},
            },
            {
                "next_thought": "compare",
                "next_tool_name": "choose_category",
                "next_tool_args": {"product": "espresso beans 1 kg", "candidates": cands},
            },
            {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "from the tools", "category": "from the tool"},
        ]
    )
    agent = dspy.ReAct(
        "product -> category",
        tools=[categoriser_tool(de), general_expert_tool(GeneralExpert())],
        max_iters=4,
    )
    agent.set_lm(agent_lm)
    n0 = len(smollm.history)
    with dspy.context(lm=smollm, adapter=dspy.JSONAdapter()):
        out = agent(product=p.title)
    traj = out.trajectory
    assert [traj[f"tool_name_{i}"] for i in range(3)] == [
        "categorise_product",
        "choose_category",
        "finish",
    ]
    filed, chosen = traj["observation_0"], traj["observation_1"]
    assert isinstance(filed, dict) and filed["routed"], filed
    top3 = [c.id for c in domain.predict_topk([p], k=3)[0]]
    assert filed["category"] in top3 and filed["why"]
    assert isinstance(chosen, dict) and chosen["choice"] in cands
    assert sorted(chosen["ranking"]) == sorted(cands)
    assert len(smollm.history) - n0 >= 2  # both tools asked the real LLM
    assert len(engine.requests) == 4 and out.category == "from the tool"


class Listing(dspy.Module):
    """A user's own module: file the product, then write a tagline for its category."""

    def __init__(self, domain):
        super().__init__()
        self.categoriser = DualExpert(domain, GeneralExpert(), k=3, threshold=1.01)
        self.tagline = dspy.Predict("product, category -> tagline")

    def forward(self, product):
        filed = self.categoriser(product)
        line = self.tagline(product=product.title, category=filed.category)
        return dspy.Prediction(category=filed.category, candidates=filed.candidates, **line)


def test_inside_a_user_module_with_save_and_load(smollm, data, tmp_path):
    domain, test = data
    listing = Listing(domain)
    names = [n for n, _ in listing.named_predictors()]
    assert names == ["categoriser.general.predict", "tagline"]  # visible to DSPy optimisers
    with dspy.context(lm=smollm, adapter=dspy.JSONAdapter()):
        out = listing(test[1])
    assert out.category in [c["id"] for c in out.candidates]
    assert isinstance(out.tagline, str) and out.tagline.strip()
    # DSPy's own save/load round trip of the composed program
    demo = dspy.Example(product="mouse", candidates="1. Mice\n2. Cables", choice=1, reason="r")
    listing.categoriser.general.predict.demos = [demo]
    listing.tagline.signature = listing.tagline.signature.with_instructions("Be brief.")
    listing.save(str(tmp_path / "listing.json"))
    back = Listing(domain)
    back.load(str(tmp_path / "listing.json"))
    assert [dict(d) for d in back.categoriser.general.predict.demos] == [dict(demo)]
    assert back.tagline.signature.instructions == "Be brief."
    # and the DualExpert alone
    listing.categoriser.save(str(tmp_path / "dual.json"))
    de = DualExpert(domain, GeneralExpert())
    de.load(str(tmp_path / "dual.json"))
    assert [dict(d) for d in de.general.predict.demos] == [dict(demo)]


def _count(monkeypatch, engine) -> list:
    seen: list = []
    complete = engine.complete
    monkeypatch.setattr(engine, "complete", lambda req: seen.append(req) or complete(req))
    return seen


def test_thread_parallel_batch(smollm, data, monkeypatch):
    seen = _count(monkeypatch, smollm._engine_spec)
    domain, test = data
    de = DualExpert(domain, GeneralExpert(), k=3, threshold=1.01)
    prods = routable(domain, test[2:], 3)
    examples = [dspy.Example(product=p).with_inputs("product") for p in prods]
    with dspy.context(lm=smollm):
        outs = de.batch(examples, num_threads=3, disable_progress_bar=True)
    assert len(outs) == 3 and len(seen) == 3  # one LLM request per product
    for p, out in zip(prods, outs, strict=True):  # in input order, each with its own candidates
        assert ids(out) == [c.id for c in domain.predict_topk([p], k=3)[0]]
        assert out.routed and out.category in ids(out)


def test_async_calls_use_the_async_engine(smollm, data, monkeypatch):
    domain, test = data
    de = DualExpert(domain, GeneralExpert(), k=3, threshold=1.01)
    ge = GeneralExpert()
    sync_calls = _count(monkeypatch, smollm._engine_spec)
    async_engine = smollm._async_engine_spec
    calls = []
    original = async_engine.complete

    async def counted(request):
        calls.append(request)
        return await original(request)

    monkeypatch.setattr(async_engine, "complete", counted)

    p5, p6 = routable(domain, test[5:], 2)

    async def run():
        return await asyncio.gather(
            de.acall(p5),
            de.acall(p6),
            ge.acall(product="espresso beans", candidates=["Coffee", "Laptops", "Shoes"]),
        )

    with dspy.context(lm=smollm):
        a, b, g = asyncio.run(run())
    # the LLM calls went through the async engine (which runs the sync one in a worker thread)
    assert len(calls) == 3 and len(sync_calls) == 3
    for p, out in ((p5, a), (p6, b)):
        assert ids(out) == [c.id for c in domain.predict_topk([p], k=3)[0]]
        assert out.routed and out.category in ids(out)
    assert 0 <= g.index < 3 and sorted(g.ranking) == [0, 1, 2]


def test_acall_of_a_confident_product_skips_the_llm(data):
    domain, test = data
    lm, engine = fake_lm()
    de = DualExpert(domain, GeneralExpert(), k=3, threshold=0.0)
    with dspy.context(lm=lm):
        out = asyncio.run(de.acall(test[0]))
    assert not out.routed and out.decision == "domain" and engine.requests == []
