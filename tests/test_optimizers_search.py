"""DSPy's search optimisers (GEPA, MIPROv2, SIMBA) end to end on a real local LLM (SmolLM2)
at tiny sizes; every request that reaches the model is counted against the run's budget."""

from __future__ import annotations

import dspy
import pytest
from _dspy_fakes import tfidf_domain
from dualexpert.optimizers import build_examples, load_program, optimize

from dualexpert.demo import split_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from dualexpert.lm import local_lm

    return local_lm("smollm2", max_tokens=96, cache=False)


@pytest.fixture(scope="module")
def demo_split():
    return split_demo(seed=0)


def _count(monkeypatch, lm) -> list:
    engine = lm._engine_spec  # the llama.cpp engine: count the requests that reach it
    seen: list = []
    complete = engine.complete
    monkeypatch.setattr(engine, "complete", lambda req: seen.append(req) or complete(req))
    return seen


def test_gepa_run_on_a_real_local_llm(smollm, demo_split, tmp_path, monkeypatch):
    seen = _count(monkeypatch, smollm)
    train, test = demo_split
    domain = tfidf_domain(train)
    trainset = build_examples(domain, test[:2], k=3)
    devset = build_examples(domain, test[2:3], k=3)
    res = optimize(
        trainset,
        devset,
        "gepa",
        lm=smollm,
        max_calls=16,
        settings={"reflection_minibatch_size": 1},
        out=tmp_path / "gepa.json",
        log=None,
    )
    assert 0 < res.calls <= 16
    assert res.calls == len(seen)  # every request that reached the model was counted
    for scores in (res.before, res.after):
        assert set(scores) == {"exact", "hierarchical", "mrr"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    back = load_program(tmp_path / "gepa.json")
    with dspy.context(lm=smollm):
        pred = back(product=devset[0].product, candidates=devset[0].candidates)
    assert 0 <= pred.index < 3


def test_mipro_run_on_a_real_local_llm(smollm, demo_split, monkeypatch):
    seen = _count(monkeypatch, smollm)
    train, test = demo_split
    domain = tfidf_domain(train)
    trainset = build_examples(domain, test[:3], k=3)
    devset = build_examples(domain, test[3:4], k=3)
    settings = {"num_candidates": 1, "num_trials": 1, "max_bootstrapped_demos": 1}
    settings |= {"program_aware_proposer": False, "data_aware_proposer": False}
    res = optimize(trainset, devset, "mipro", lm=smollm, max_calls=16, settings=settings, log=None)
    assert 0 < res.calls == len(seen) <= res.projected["at_most"]
    assert all(0.0 <= v <= 1.0 for v in res.after.values())
    assert res.program.predict.signature.instructions  # an instruction was chosen


def test_simba_run_on_a_real_local_llm(smollm, demo_split, monkeypatch):
    seen = _count(monkeypatch, smollm)
    train, test = demo_split
    domain = tfidf_domain(train)
    trainset = build_examples(domain, test[:2], k=3)
    devset = build_examples(domain, test[2:3], k=3)
    settings = {"bsize": 2, "num_candidates": 1, "max_steps": 1, "max_demos": 1}
    res = optimize(trainset, devset, "simba", lm=smollm, max_calls=20, settings=settings, log=None)
    assert 0 < res.calls == len(seen) <= res.projected["at_most"]
    assert set(res.before) == set(res.after) == {"exact", "hierarchical", "mrr"}
