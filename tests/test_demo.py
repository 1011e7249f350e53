"""``dualexpert demo`` end to end: the LLM path with SmolLM2 on a small size, and ``--no-llm``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dualexpert.cli import app
from dualexpert.demo import split_demo

pytestmark = pytest.mark.slow

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_with_the_llm(tmp_path):
    out = tmp_path / "demo"
    res = runner.invoke(
        app,
        ["demo", "--out", str(out), "--epochs", "1", "--llm", "smollm2", "--dev-size", "4",
         "--llm-products", "3"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    result = json.loads((out / "demo.json").read_text())
    train, held = split_demo(seed=0)
    assert (result["n_train"], result["n_dev"], result["n_test"]) == (len(train), 4, len(held) - 4)

    # the table: one row per system, in the printed output and in demo.json
    rows = {r["system"]: r for r in result["rows"]}
    assert list(rows) == ["tfidf_linear", "domain_expert", "dual_expert"]
    table = [ln for ln in res.output.splitlines() if ln.startswith("│")]
    for name in ("TF-IDF + linear", "domain expert", "dual expert"):
        assert sum(name in ln for ln in table) == 1
    for head in ("accuracy", "weighted F1", "LLM calls", "s/product", "fixed", "broken"):
        assert head in res.output
    for r in rows.values():
        assert 0 <= r["lvl3_accuracy"] <= 1 and 0 <= r["lvl3_f1_weighted"] <= 1
        assert r["seconds_per_product"] >= 0
    assert rows["tfidf_linear"]["llm_calls"] == rows["domain_expert"]["llm_calls"] == 0

    # the plot of the dev curve
    assert (out / "threshold.png").read_bytes()[:8] == PNG
    curve = result["llm"]["curve"]
    traffic = [c["llm_traffic"] for c in sorted(curve, key=lambda c: c["threshold"])]
    assert traffic == sorted(traffic) and traffic[-1] == 1.0  # more threshold, more traffic
    dev = [json.loads(x) for x in (out / "dev-run.jsonl").read_text().splitlines()]
    assert len(dev) == 4 and all(r["routed"] for r in dev)  # each dev product asked once

    # the test run: threshold routing, the LLM sees only the routed (least-confident) products
    recs = [json.loads(x) for x in (out / "test-run.jsonl").read_text().splitlines()]
    assert len(recs) == result["n_test"]
    routed = [r for r in recs if r["routed"]]
    kept = [r for r in recs if not r["routed"]]
    t = result["llm"]["test_threshold"]
    assert all(r["candidates"][0]["probability"] < t for r in routed)
    assert all(r["candidates"][0]["probability"] >= t for r in kept)
    if result["llm"]["forced_routing"]:  # the demo routes the 3 least confident; says so
        assert len(routed) == 3 and "least-confident" in " ".join(res.output.split())
    assert all(r["usage"]["llm_calls"] == 0 and r["category"] == r["ranking"][0] for r in kept)
    dual = rows["dual_expert"]
    assert dual["routed"] == len(routed) > 0
    # score strategy: one forward pass per routed product, with real (non-uniform) preferences
    assert dual["llm_calls"] == len(routed) == sum(r["usage"]["llm_calls"] for r in recs)
    assert all(len(set(r["llm_logprobs"])) > 1 for r in routed)
    # fixed and broken add up to the change in accuracy over the domain expert's top-1
    ok = sum(r["category"] == " > ".join(r["gold"]) for r in recs)
    dom = sum(r["candidates"][0]["id"] == " > ".join(r["gold"]) for r in recs)
    assert dual["fixed"] - dual["broken"] == ok - dom
    assert dual["lvl3_accuracy"] == pytest.approx(ok / len(recs))
    assert "plot:" in res.output and "results:" in res.output


def test_demo_without_the_llm(tmp_path):
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "0.5", "--no-llm"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    result = json.loads((out / "demo.json").read_text())
    _, held = split_demo(seed=0)
    assert result["n_dev"] == 0 and result["n_test"] == len(held)
    assert [r["system"] for r in result["rows"]] == ["tfidf_linear", "domain_expert"]
    assert "llm" not in result and not (out / "threshold.png").exists()
    assert not (out / "test-run.jsonl").exists()
    assert "dual expert" not in res.output and "domain expert" in res.output
    assert (out / "domain-expert" / "model.safetensors").exists()


def test_demo_fusion_weight_words_mean_what_classify_means(tmp_path):
    """dev: chosen on the demo's dev products; auto: classify's rule for the LLM (0.25 with the
    bundled local one); a bad value is one line and exit 2 before anything is trained."""
    from dualexpert.demo import _parse_weight
    from dualexpert.lm import hosted_lm, local_lm

    local = local_lm("smollm2")  # no process starts until the first request
    hosted = hosted_lm("openai/some-model", api_base="http://127.0.0.1:9/v1")
    assert _parse_weight("dev", local) == (True, None)
    assert _parse_weight("auto", local) == (False, 0.25)
    assert _parse_weight("auto", hosted) == (False, None)
    assert _parse_weight("none", local) == (False, None)
    assert _parse_weight("0.5", hosted) == (False, 0.5)

    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--fusion-weight", "heavy"])
    assert res.exit_code == 2, res.output
    assert "fusion weight must be dev, auto, none or a number, not 'heavy'" in " ".join(
        res.output.split()
    )
    assert not (out / "domain-expert").exists()  # refused before training
