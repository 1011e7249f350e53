"""Optimisation runs over the general expert: examples, metric, budget, the five DSPy optimisers
(flow on a scripted LM), save/load, and end to end on a real local LLM (SmolLM2) through the
Python API and the CLI."""

from __future__ import annotations

import json

import dspy
import pytest
from _dspy_fakes import fake_lm, tfidf_domain, tiny_domain_expert
from dualexpert.optimizers import (
    OPTIMIZERS,
    Budget,
    BudgetExceeded,
    budgeted_lm,
    build_examples,
    candidate_metric,
    load_program,
    optimize,
    project_calls,
    save_program,
)
from dualexpert.optimizers.budget import unwrap_lm
from typer.testing import CliRunner

from dualexpert.demo import split_demo
from dualexpert.general import GeneralExpert

IDS = ["Home > Party > Balloons", "Home > Party > Cake Toppers", "Food > Baking > Sprinkles"]


def ex(i: int, gold: int) -> dspy.Example:
    return dspy.Example(
        product=f"product {i}",
        candidates=["Balloons (Home › Party)", "Cake Toppers (Home › Party)", "Sprinkles (Food)"],
        gold=IDS[gold].split(" > "),
        candidate_ids=IDS,
        candidate_paths=[x.split(" > ") for x in IDS],
        domain_probability=0.5,
        product_id=str(i),
    ).with_inputs("product", "candidates")


@pytest.fixture(scope="module")
def demo_split():
    return split_demo(seed=0)


def test_build_examples_fixes_the_domain_experts_candidates(demo_split):
    train, test = demo_split
    domain = tfidf_domain(train)
    exs = build_examples(domain, test[:6], k=3, representation="path")
    assert len(exs) == 6
    with pytest.raises(ValueError, match="each would be shown as its own example"):
        build_examples(domain, test[:2], k=3, representation="examples")
    for e, p in zip(exs, test[:6], strict=True):
        assert set(e.inputs().keys()) == {"product", "candidates"}
        assert e.product == p.text() and e.gold == list(p.category)
        assert len(e.candidates) == len(e.candidate_ids) == 3
        top = domain.predict_topk([p], k=3)[0]
        assert e.candidate_ids == [c.id for c in top]
        assert e.candidates == [" > ".join(c.path) for c in top]  # the "path" representation
    # unlabelled products are left out
    from dualexpert.data import Product

    assert build_examples(domain, [Product(title="x")], k=3) == []


def test_candidate_metric_maps_the_chosen_index_to_the_category():
    e = ex(0, 1)
    right = dspy.Prediction(index=1, ranking=[1, 0, 2])
    near = dspy.Prediction(index=0, ranking=[0, 1, 2])
    far = dspy.Prediction(index=2, ranking=[2, 0, 1])
    assert candidate_metric("exact")(e, right) == 1.0
    assert candidate_metric("exact")(e, near) == 0.0
    assert candidate_metric("hierarchical")(e, near) == pytest.approx(2 / 3)
    assert candidate_metric("hierarchical")(e, far) == 0.0
    assert candidate_metric("mrr")(e, near) == 0.5
    assert candidate_metric("mrr")(e, far) == pytest.approx(1 / 3)  # gold ranked third
    fb = candidate_metric("feedback")(e, far, None, "predict", None)
    assert fb.score == 0.0 and "instead of 'Home > Party > Cake Toppers'" in fb.feedback
    assert candidate_metric("exact")(e, None) == 0.0  # a failed run scores 0
    assert candidate_metric("exact")(e, dspy.Prediction(index=7, ranking=[7])) == 0.0


def test_budget_counts_shares_and_refuses():
    lm, engine = fake_lm()
    seen = []
    budget = Budget(3, progress=seen.append)
    blm = budgeted_lm(lm, budget)
    copy = blm.copy(rollout_id=1, temperature=1.0)  # optimisers copy LMs: the count is shared
    blm("hi")
    copy("hi")
    blm("hi")
    with pytest.raises(BudgetExceeded):
        copy("hi")
    assert budget.calls == 3 and budget.refused == 1 and len(engine.requests) == 3
    assert seen == [1, 2, 3]
    # saved state names the plain LM class, and unwrapping gives a plain LM
    assert blm.dump_state()["_dspy_lm_class"] == "dspy.clients.lm.LM"
    assert type(unwrap_lm(blm)) is dspy.LM
    unwrap_lm(blm)("hi")
    assert budget.calls == 3


def test_projection_over_the_cap_is_refused_before_any_call():
    lm, engine = fake_lm()
    train, dev = [ex(i, 1) for i in range(6)], [ex(10 + i, 1) for i in range(3)]
    proj = project_calls("random_search", 6, 3)
    assert proj["expected"] > 20 and proj["at_most"] >= proj["expected"]
    with pytest.raises(BudgetExceeded, match="projected"):
        optimize(train, dev, "random_search", lm=lm, max_calls=20, log=None)
    assert engine.requests == []
    with pytest.raises(ValueError, match="disjoint"):
        optimize(train, train[:2], "bootstrap", lm=lm, log=None)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_dspy_optimizer_runs_within_its_projection(name, tmp_path):
    # the scripted LM always answers candidate 2; gold is candidate 2 on dev
    lm, engine = fake_lm(choice=2)
    train = [ex(i, i % 3) for i in range(6)]
    dev = [ex(10 + i, 1) for i in range(3)]
    progress = []
    res = optimize(
        train,
        dev,
        name,
        lm=lm,
        max_calls=400,
        out=tmp_path / "p.json",
        progress=lambda n, total: progress.append((n, total)),
        log=None,
    )
    assert res.calls == len(engine.requests) <= res.projected["at_most"]
    assert progress[-1] == (res.calls, res.projected["expected"])
    assert res.domain["exact"] == 0.0  # the domain expert's top-1 is candidate 1
    assert res.before["exact"] == 1.0 and res.after["exact"] == 1.0
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["dualexpert"]["optimizer"] == name and "predict" in saved
    assert saved["predict"]["lm"] is None
    loaded = load_program(tmp_path / "p.json")
    assert loaded.predict.demos == res.program.predict.demos or len(loaded.predict.demos) == len(
        res.program.predict.demos
    )
    assert loaded.predict.signature.instructions == res.program.predict.signature.instructions


def test_gepa_budget_sets_its_metric_calls():
    lm, engine = fake_lm(choice=2)
    train, dev = [ex(i, 1) for i in range(4)], [ex(10, 1)]
    res = optimize(train, dev, "gepa", lm=lm, max_calls=40, log=None)
    assert 4 <= res.settings["max_metric_calls"] <= 40
    assert res.calls <= 40
    with pytest.raises(BudgetExceeded, match="GEPA"):
        optimize(train, dev, "gepa", lm=lm, max_calls=8, log=None)


def test_save_load_round_trip_keeps_demos_instructions_and_strategy(tmp_path):
    prog = GeneralExpert("rank")
    prog.predict.signature = prog.predict.signature.with_instructions("Rank by product words.")
    prog.predict.demos = [
        dspy.Example(product="mouse", candidates="1. Mice\n2. Cables", ranking=[1, 2], reason="r")
    ]
    path = save_program(prog, tmp_path / "prog.json", meta={"optimizer": "manual"})
    back = load_program(path)
    assert back.strategy == "rank"
    assert back.predict.signature.instructions == "Rank by product words."
    assert [dict(d) for d in back.predict.demos] == [dict(d) for d in prog.predict.demos]
    # DSPy's own load into a fresh module works on the same file
    plain = GeneralExpert("rank")
    plain.load(str(path))
    assert plain.predict.signature.instructions == "Rank by product words."


def test_a_custom_students_strategy_is_recorded_and_a_mismatch_refused(tmp_path):
    """The saved file records the compiled student's own strategy (not the default's), loads
    back as it, and a program loaded under another strategy is an error, not a module whose
    saved fields DSPy matched to the other strategy's by position."""
    from dualexpert.pipeline import load_dual_expert

    lm, _ = fake_lm(choice=2)
    train, dev = [ex(i, 1) for i in range(3)], [ex(10, 1)]
    for strategy in ("rank", "cot_rank"):
        out = tmp_path / f"{strategy}.json"
        optimize(train, dev, "bootstrap", student=GeneralExpert(strategy), lm=lm,
                 max_calls=100, out=out, log=None)  # fmt: skip
        assert json.loads(out.read_text())["dualexpert"]["strategy"] == strategy
        assert load_program(out).strategy == strategy
        with pytest.raises(ValueError, match=f"compiled for strategy '{strategy}'"):
            load_program(out, strategy="zero_shot")
    # a program saved by DSPy's own module.save records no strategy: the caller's is used
    plain = tmp_path / "plain.json"
    GeneralExpert("rank").save(str(plain))
    model = tmp_path / "model"
    tiny_domain_expert(model)
    de = load_dual_expert(model, strategy="rank", program=plain, general="llm")
    assert de.general.strategy == "rank"
    # a file that holds no general expert (a whole DualExpert saved by DSPy) is named as such
    de.save(str(tmp_path / "dual.json"))
    with pytest.raises(ValueError, match="holds no general expert"):
        load_program(tmp_path / "dual.json")


# -- real local LLM ------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_optimize_then_classify_with_the_program(tmp_path, demo_catalogue):
    from dualexpert.cli import app

    model = tmp_path / "domain"
    tiny_domain_expert(model)
    runner = CliRunner()
    prog = tmp_path / "prog.json"
    report = tmp_path / "report.json"
    args = ["optimize", "--model", str(model), "--train", str(demo_catalogue), "--dev"]
    args += [str(demo_catalogue), "--out", str(prog), "--optimizer", "bootstrap"]
    args += ["--llm", "smollm2", "--limit-train", "2", "--limit-dev", "1", "--k", "3"]
    args += ["--json", str(report)]
    res = runner.invoke(app, [*args, "--max-calls", "3"])
    assert res.exit_code == 3, res.output  # projected 1 + 2 + 1 calls > 3: refused
    assert "projected" in res.output and not prog.exists()
    res = runner.invoke(app, [*args, "--max-calls", "8"])
    assert res.exit_code == 0, res.output
    assert "projected LLM calls" in res.output and "before" in res.output
    rep = json.loads(report.read_text())
    assert rep["optimizer"] == "bootstrap" and rep["n_train"] == 2 and rep["n_dev"] == 1
    assert 0 < rep["calls"] <= 8 and rep["path"] == str(prog)
    assert json.loads(prog.read_text())["dualexpert"]["strategy"] == "zero_shot"
    out = tmp_path / "out.jsonl"
    res = runner.invoke(
        app,
        ["classify", str(model), str(demo_catalogue), "--out", str(out), "--program", str(prog)]
        + ["--llm", "smollm2", "--limit", "1", "--threshold", "1.01", "--k", "3"],
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["routed"] and rec["category"] in [c["id"] for c in rec["candidates"]]
