"""Each script in examples/ run on a real local LLM (SmolLM2) with a small, barely trained domain
expert, at tiny sizes. The scripts are loaded and their ``main(argv)`` called in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import dspy
import pytest
from _dspy_fakes import fake_lm, tiny_domain_expert

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("domain")
    expert = tiny_domain_expert(folder)
    return folder, expert


@pytest.fixture(autouse=True)
def _reset_dspy():
    yield
    dspy.configure(lm=None, adapter=None, track_usage=False)


def test_categorise_catalogue(domain, capsys):
    folder, expert = domain
    recs = load("categorise_catalogue").main(
        ["--llm", "smollm2", "--domain", str(folder), "--n", "2", "--threshold", "1.01"]
    )
    assert len(recs) == 2
    for r in recs:
        assert r["routed"] and r["category"] in r["candidates"] and len(r["candidates"]) == 3
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["title"] for x in lines] == [r["title"] for r in recs]


def test_react_agent_files_products_with_the_categoriser_tool(domain):
    folder, expert = domain
    from dualexpert.demo import split_demo

    _, test = split_demo()
    # SmolLM2-135M cannot hold the ReAct format, so a scripted LM drives the agent's own steps;
    # the categoriser the tool calls runs on the real local LLM.
    script = []
    for p in test[:2]:
        script += [
            {
                "next_thought": "file it",
                "next_tool_name": "categorise_product",
                "next_tool_args": {"title": p.title},
            },
            {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
            {"category": "see tool", "explanation": "the tool said so"},
        ]
    agent_lm, engine = fake_lm(script=script)
    recs = load("react_agent").main(
        ["--llm", "smollm2", "--domain", str(folder), "--n", "2"], agent_lm=agent_lm
    )
    smol = dspy.settings.lm
    assert len(recs) == 2
    for r, p in zip(recs, test[:2], strict=True):
        assert r["tool_calls"] == ["categorise_product", "finish"]
        obs = r["observations"][0]
        assert isinstance(obs, dict), obs  # the tool ran, it did not error
        top3 = [c.id for c in expert.predict_topk([p], k=3)[0]]
        alts = [a["category"] for a in obs["alternatives"]]
        assert obs["category"] in top3 and set(alts) | {obs["category"]} == set(top3)
        assert obs["why"]
    # the categoriser asked the real LLM for each product it was unsure of
    routed = sum(o["routed"] for r in recs for o in r["observations"][:1])
    assert len(smol.history) >= routed
    assert len(engine.requests) == 6


def test_optimisation_run(domain, tmp_path):
    folder, _ = domain
    out = tmp_path / "prog.json"
    report = load("optimize_categoriser").main(
        ["--llm", "smollm2", "--domain", str(folder), "--optimizer", "bootstrap"]
        + ["--n-train", "2", "--n-dev", "1", "--max-calls", "8", "--out", str(out)]
    )
    assert report["optimizer"] == "bootstrap" and report["n_train"] == 2 and report["n_dev"] == 1
    assert 0 < report["calls"] <= 8
    assert set(report["before"]) == set(report["after"]) == {"exact", "hierarchical", "mrr"}
    assert json.loads(out.read_text())["dualexpert"]["optimizer"] == "bootstrap"


def test_hosted_llm_through_a_litellm_model_string(domain, server):
    folder, _ = domain
    recs = load("hosted_llm").main(
        ["--model", "openai/smollm2", "--api-base", server, "--domain", str(folder)]
        + ["--n", "2", "--max-tokens", "96"]
    )
    assert len(recs) == 2  # one blocking call, one through acall
    for r in recs:
        assert r["category"] in r["candidates"] and r["model"] == "openai/smollm2"
