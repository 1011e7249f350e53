"""The rationale writer and the LLM judge on a real local LLM (SmolLM2 through llama.cpp)."""

from __future__ import annotations

import json

import dspy
import pytest
from relevance_fixtures import write_pairs
from typer.testing import CliRunner

from dualexpert.cli import app
from dualexpert.lm import local_lm
from dualexpert.relevance import RationaleWriter, load_pairs, write_rationales
from dualexpert.relevance.judge import RelevanceJudge, balanced_demos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    return local_lm("smollm2", max_tokens=96, cache=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return load_pairs(write_pairs(tmp_path_factory.mktemp("p"))[0])


def test_rationale_writer_real_llm(smollm, pairs):
    with dspy.context(lm=smollm):
        pred = RationaleWriter(max_tokens=48)(query=pairs[0].query, title=pairs[0].title, label=1)
    assert isinstance(pred.rationale, str) and len(pred.rationale.split()) >= 3
    # the label is part of the prompt the model saw
    sent = json.dumps(smollm.history[-1]["messages"])
    assert "relevant" in sent and pairs[0].query in sent
    with pytest.raises(ValueError, match="label"):
        RationaleWriter()(query="a", title="b", label="maybe")


def test_rationale_run_resumes_after_interruption(smollm, pairs, tmp_path):
    out = tmp_path / "r.jsonl"
    todo = pairs[:3]
    calls = {"n": 0}

    def stop_after_one(n):
        calls["n"] += n
        if calls["n"] == 1:
            raise KeyboardInterrupt

    with dspy.context(lm=smollm), pytest.raises(KeyboardInterrupt):
        write_rationales(todo, out, RationaleWriter(max_tokens=48), progress=stop_after_one)
    assert len(out.read_text().splitlines()) == 1
    with out.open("a") as f:  # a kill in the middle of a write leaves a torn line
        f.write('{"id": "torn", "rationale": "half')
    with dspy.context(lm=smollm):
        totals = write_rationales(todo, out, RationaleWriter(max_tokens=48))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert totals["skipped"] == 1 and totals["written"] + totals["failed"] == 2
    assert totals["llm_calls"] >= totals["written"]
    assert len({r["id"] for r in rows}) == len(rows) == 1 + totals["written"]
    assert all(r["rationale"] and r["label"] in (0, 1) for r in rows)


def test_judge_generate_and_score(smollm, pairs):
    with dspy.context(lm=smollm):
        g = RelevanceJudge("generate")(query=pairs[0].query, title=pairs[0].title)
        s = RelevanceJudge("score", balanced_demos(pairs[2:], 2))(
            query=pairs[0].query, title=pairs[0].title
        )
    assert g.probability in (0.0, 1.0, 0.5) and isinstance(g.relevant, bool)
    assert 0.0 < s.probability < 1.0 and s.relevant == (s.probability >= 0.5)
    demos = balanced_demos(pairs, 4)
    assert [d.relevant for d in demos] == ["yes", "no", "yes", "no"]


def test_cli_rationales_real_llm(pairs, tmp_path):
    folder = tmp_path
    csv_path, _ = write_pairs(folder)
    out = folder / "r.jsonl"
    args = [
        "rationales",
        str(csv_path),
        "--out",
        str(out),
        "--llm",
        "smollm2",
        "--split",
        "all",
        "--sample",
        "2",
        "--adapter",
        "chat",
    ]
    res = CliRunner().invoke(app, [*args[:-1], "xml"])
    assert res.exit_code != 0 and "adapter must be brief, json or chat" in res.output
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["rationale"].strip() for r in rows)
    res = CliRunner().invoke(app, args)  # a rerun has nothing left to do
    assert res.exit_code == 0 and '"skipped": 2' in res.output


def test_cli_rationales_killed_twice_resumes_exactly(tmp_path):
    import sys

    from kill_and_resume import kill_twice_then_finish

    csv_path, _ = write_pairs(tmp_path)
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "dualexpert.cli", "rationales", str(csv_path), "--out", str(out)]
    cmd += ["--llm", "smollm2", "--split", "all", "--sample", "10"]
    res = kill_twice_then_finish(cmd, out, waits=(2, 5))
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    totals = json.loads(res.stderr[res.stderr.index("{") :].replace("\n", ""))
    assert len(ids) == len(set(ids))  # nothing written twice
    assert totals["skipped"] >= 5 and totals["skipped"] + totals["written"] + totals["failed"] == 10
    assert len(ids) == totals["skipped"] + totals["written"]  # nothing lost
