"""``dualexpert train --reranker`` trains the reranker too, and ``evaluate --strategy`` /
``classify`` then use it as that model's general expert: no LLM call unless ``--llm-tier`` asks
for one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dualexpert.cli import app
from dualexpert.pipeline import load_dual_expert
from dualexpert.reranker import CascadeExpert, RerankerExpert

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory, demo_catalogue_path):
    out = tmp_path_factory.mktemp("cli-rr") / "model"
    args = ["train", str(demo_catalogue_path), "--out", str(out), "--epochs", "1"]
    args += ["--batch-size", "16", "--learning-rate", "2e-4", "--reranker"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def demo_catalogue_path():
    from dualexpert.demo import DEMO_CATALOGUE

    return DEMO_CATALOGUE


def test_train_saves_the_reranker_and_the_default_dual_expert_uses_it(model):
    assert (model / "reranker" / "dualexpert.json").is_file()
    assert (model / "reranker" / "cross-encoder" / "model.safetensors").is_file()
    de = load_dual_expert(model)
    assert isinstance(de.general, RerankerExpert) and de.fusion_weight == 1.0
    # the "auto" representation is the reranker's own, whatever the LLM's strategy
    assert de.representation == "descriptive"
    assert load_dual_expert(model, strategy="channel").representation == "descriptive"
    assert isinstance(load_dual_expert(model, llm_tier=0.5).general, CascadeExpert)
    assert type(load_dual_expert(model, general="llm").general).__name__ == "GeneralExpert"
    # summaries are not what it was trained on: auto falls back to the LLM, reranker refuses
    with pytest.raises(ValueError, match="trained on 'descriptive'"):
        load_dual_expert(model, representation="path", general="reranker")
    assert type(load_dual_expert(model, representation="path").general).__name__ == (
        "GeneralExpert"
    )


def test_evaluate_and_classify_default_to_the_reranker(model, demo_catalogue_path, tmp_path):
    rep = tmp_path / "dual.json"
    args = ["evaluate", str(model), str(demo_catalogue_path), "--strategy", "zero_shot"]
    args += ["--limit", "30", "--threshold", "1.01", "--json", str(rep)]
    res = runner.invoke(app, [*args, "--run-file", str(tmp_path / "run.jsonl")])
    assert res.exit_code == 0, res.output
    summary = json.loads(rep.read_text())
    assert summary["routed"] == 30 and summary["llm_calls_per_product"] == 0.0
    assert summary["config"]["general"] == "RerankerExpert"
    assert summary["fallback"] == 0
    out = tmp_path / "classified.jsonl"
    args = ["classify", str(model), str(demo_catalogue_path), "--out", str(out)]
    res = runner.invoke(app, [*args, "--limit", "20", "--threshold", "1.01"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 20 and all(r["decision"] == "reranked" for r in recs)
    assert all(r["category"] in {c["id"] for c in r["candidates"]} for r in recs)


def test_general_reranker_without_one_is_a_clear_error(tmp_path, demo_catalogue_path):
    out = tmp_path / "m"
    args = ["train", str(demo_catalogue_path), "--out", str(out), "--epochs", "0.2"]
    res = runner.invoke(app, args)  # no reranker unless asked for
    assert res.exit_code == 0, res.output
    assert not (out / "reranker").exists()
    args = ["evaluate", str(out), str(demo_catalogue_path), "--strategy", "zero_shot"]
    res = runner.invoke(app, [*args, "--general", "reranker", "--limit", "5"])
    assert res.exit_code != 0 and "has no reranker" in res.output.replace("\n", " ")
