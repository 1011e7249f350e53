"""The dual-expert commands end to end: ``summarize``, ``index``, ``classify`` (with resume),
``evaluate --strategy`` and ``threshold``, on the demo catalogue with a tiny domain expert and
SmolLM2 (llama.cpp, in-process) as the LLM."""

from __future__ import annotations

import csv
import json
import re
import statistics

import pytest
from dualexpert.indexes import SummaryIndex
from typer.testing import CliRunner

from dualexpert.cli import app
from dualexpert.demo import split_demo
from dualexpert.domain import DomainExpert
from dualexpert.evaluation.dual import labelled_records, summarise_records
from dualexpert.evaluation.routing import choose_fusion_weight, choose_threshold, threshold_curve

pytestmark = pytest.mark.slow

runner = CliRunner()
LLM = ["--llm", "smollm2"]
N = 8  # products per LLM run


def _write_csv(path, products) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "description", "category"])
        for p in products:
            w.writerow([p.id, p.title, p.description, " > ".join(p.category)])


def _run(args: list[str]):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny domain expert trained on 70% of the demo catalogue; the rest as a labelled file.

    ``threshold`` is the median confidence on the first ``N`` held-out products, so that
    routing sends some of them to the LLM and keeps some with the domain expert.
    """
    d = tmp_path_factory.mktemp("cli_dual")
    train, held = split_demo(seed=0)
    _write_csv(d / "train.csv", train)
    _write_csv(d / "held.csv", held)
    expert = DomainExpert(epochs=1, batch_size=16, learning_rate=2e-4, seed=0)
    expert.fit(train, progress=False).save(d / "model")
    probs = [c[0].probability for c in expert.predict_topk(held[:N], k=1)]
    return {
        "dir": d,
        "model": d / "model",
        "train": d / "train.csv",
        "held": d / "held.csv",
        "held_products": held,
        "leaves": [c.id for c in expert.taxonomy.leaves],
        "threshold": statistics.median(probs),
    }


def _summarize_args(work, out) -> list:
    # short summaries: SmolLM2 may otherwise loop up to the default cap
    return ["summarize", work["model"], work["train"], "--out", out, *LLM, "--n-examples", 3,
            "--max-tokens", 48]  # fmt: skip


@pytest.fixture(scope="module")
def summaries(work):
    out = work["dir"] / "summaries"
    res = _run(_summarize_args(work, out))
    return out, res


def test_summarize_writes_an_index_of_every_leaf(work, summaries):
    out, res = summaries
    assert f"indexed {len(work['leaves'])} summaries" in res.output
    ix = SummaryIndex.load(out)
    assert sorted(ix.summaries) == sorted(work["leaves"])
    assert all(isinstance(s, str) and s.strip() for s in ix.summaries.values())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["count"] == len(work["leaves"]) and meta["dimension"] > 0
    journal = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in journal) == sorted(work["leaves"])


def test_summarize_resumes_from_its_journal(work, summaries, tmp_path):
    src, _ = summaries
    out = tmp_path / "ix"
    out.mkdir()
    lines = (src / "journal.jsonl").read_text().splitlines()
    keep = len(lines) - 2
    (out / "journal.jsonl").write_text("\n".join(lines[:keep]) + "\n")
    _run(_summarize_args(work, out))
    journal = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in journal]
    assert len(ids) == len(set(ids)) == len(work["leaves"])  # only the 2 missing were written
    assert journal[:keep] == [json.loads(x) for x in lines[:keep]]  # kept, not rewritten
    assert sorted(SummaryIndex.load(out).summaries) == sorted(work["leaves"])


def test_index_info_search_and_update(work, summaries, tmp_path):
    src, _ = summaries
    ix_dir = tmp_path / "ix"
    SummaryIndex.load(src).save(ix_dir)  # a copy: the update must not touch the shared one
    res = _run(["index", ix_dir])
    assert f"{len(work['leaves'])} summaries" in res.output

    res = _run(["index", ix_dir, "--search", "espresso coffee beans", "--k", 3])
    hits = [ln.split(None, 1) for ln in res.stdout.splitlines() if re.match(r"^-?\d\.\d{3}  ", ln)]
    assert len(hits) == 3 and all(cid.strip() in work["leaves"] for _, cid in hits)
    scores = [float(s) for s, _ in hits]
    assert scores == sorted(scores, reverse=True)

    coffee = next(c for c in work["leaves"] if c.endswith("Coffee"))
    text = "Roasted coffee beans and ground coffee for espresso machines and filter brewing."
    res = _run(["index", ix_dir, "--update", coffee, "--summary", text])
    assert "updated" in res.output
    ix = SummaryIndex.load(ix_dir)
    assert ix.get(coffee) == text and len(ix) == len(work["leaves"])
    assert ix.search(text, k=1)[0][0] == coffee  # the vector was replaced with the text's

    res = runner.invoke(app, ["index", str(ix_dir), "--update", coffee])
    assert res.exit_code == 2 and "--summary" in res.output


def _classify(work, out, *extra):
    return _run(
        ["classify", work["model"], work["held"], "--out", out, *LLM, "--strategy", "score",
         "--k", 3, "--threshold", work["threshold"], "--limit", N, *extra]
    )  # fmt: skip


def test_train_starts_the_head_at_the_summaries(work, summaries, tmp_path):
    """``train --label-summaries``: the folder is checked against the catalogue's taxonomy before
    any training, and a model trained with it records it."""
    src, _ = summaries
    base = ["train", work["train"], "--no-synthesize", "--no-neighbours", "--epochs", 0.3]
    stray = SummaryIndex()
    stray.update("Nowhere > Nothing", "A category of another taxonomy.")
    stray.save(tmp_path / "stray")
    res = runner.invoke(
        app, [str(a) for a in [*base, "--out", tmp_path / "bad", "--label-summaries",
                               tmp_path / "stray"]]
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "name no category of this taxonomy" in res.output
    assert not (tmp_path / "bad.checkpoints").exists()  # refused before training

    _run([*base, "--out", tmp_path / "m", "--label-summaries", src])
    saved = json.loads((tmp_path / "m" / "dualexpert.json").read_text())
    assert saved["config"]["label_summaries"] == str(src)
    assert DomainExpert.load(tmp_path / "m").predict(work["held_products"][:2])


def test_classify_routes_the_unsure_and_resumes_without_duplicates(work, tmp_path):
    out = tmp_path / "labelled.jsonl"
    res = _classify(work, out)
    totals = json.loads(res.stdout.strip().splitlines()[-1])
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    want = [p.id for p in work["held_products"][:N]]
    assert [r["id"] for r in recs] == want and totals["products"] == N
    for r in recs:
        ids = [c["id"] for c in r["candidates"]]
        assert len(ids) == 3 and r["category"] in ids
        assert r["routed"] == (r["candidates"][0]["probability"] < work["threshold"])
        if r["routed"]:  # the score strategy: one forward pass, real log-probabilities
            assert r["usage"]["llm_calls"] == 1 and r["usage"]["prompt_tokens"] > 0
            assert len(r["llm_logprobs"]) == 3 and len(set(r["llm_logprobs"])) > 1
        else:
            assert r["usage"]["llm_calls"] == 0 and r["category"] == ids[0]
    routed = sum(r["routed"] for r in recs)
    assert 0 < routed < N and totals["routed"] == routed
    assert totals["llm_calls"] == routed

    # interrupted mid-write: three whole records and half of the fourth
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    res = _classify(work, out)
    again = json.loads(res.stdout.strip().splitlines()[-1])
    assert again["already_done"] == 3 and again["products"] == N - 3
    recs2 = [json.loads(x) for x in out.read_text().splitlines()]  # every line parses
    assert sorted(r["id"] for r in recs2) == sorted(want)  # all there, none twice
    assert {r["id"]: r["category"] for r in recs2} == {r["id"]: r["category"] for r in recs}

    # a finished run: nothing to do
    res = _classify(work, out)
    assert json.loads(res.stdout.strip().splitlines()[-1])["products"] == 0
    assert len(out.read_text().splitlines()) == N


@pytest.fixture
def fresh_cache(tmp_path):
    """An empty DSPy cache, so every routed product really calls the LLM (a cache hit is not a
    call, and the disk cache outlives test runs)."""
    import dspy

    dspy.configure_cache(disk_cache_dir=str(tmp_path / "dspy-cache"))
    yield
    dspy.configure_cache()


@pytest.mark.parametrize("strategy", ["score", "zero_shot"])
def test_evaluate_strategy_scores_dual_against_domain(work, tmp_path, strategy, fresh_cache):
    run, rep = tmp_path / "run.jsonl", tmp_path / "report.json"
    res = _run(
        ["evaluate", work["model"], work["held"], "--strategy", strategy, *LLM, "--k", 3,
         "--threshold", work["threshold"], "--limit", N, "--seed", 1, "--run-file", run,
         "--json", rep]
    )  # fmt: skip
    report = json.loads(rep.read_text())
    recs = labelled_records(run)
    assert report["n"] == len(recs) == N
    assert report["config"]["strategy"] == strategy and report["config"]["limit"] == N
    assert report["config"]["fusion_weight"] == 0.25  # auto, with the bundled local LLM
    # the command's numbers are those of its run file
    again = summarise_records(recs)
    for key in ("routed", "fixed", "broken", "llm_calls_per_product"):
        assert report[key] == again[key]
    unsure = [r["candidates"][0]["probability"] < work["threshold"] for r in recs]
    assert report["routed"] == sum(unsure)
    gold_ok = sum(r["category"] == " > ".join(r["gold"]) for r in recs)
    dom_ok = sum(r["candidates"][0]["id"] == " > ".join(r["gold"]) for r in recs)
    assert report["fixed"] - report["broken"] == gold_ok - dom_ok
    assert report["dual"]["accuracy"] == pytest.approx(gold_ok / N)
    assert "dual" in res.output and "domain" in res.output and "fixed" in res.output
    assert all(r["usage"]["llm_calls"] >= 1 for r in recs if r["routed"])


def test_channel_shows_candidates_with_their_nearest_training_products(work, tmp_path):
    """With the channel strategy, "auto" shows each candidate with the training products of
    its category nearest to the product (the model's neighbour index keeps their titles), in
    the Python API and in `evaluate`; other strategies keep the descriptive name."""
    from dualexpert.pipeline import load_dual_expert, with_examples

    de = load_dual_expert(work["model"], strategy="channel")
    assert de.representation == "examples" and de.threshold == 0.8
    assert load_dual_expert(work["model"], strategy="zero_shot").representation == "descriptive"
    prod = work["held_products"][0]
    cands = de.retriever(prod).candidates
    shown = de.general_inputs(prod, cands)["candidates"]
    train = {}
    for row in csv.DictReader(work["train"].open(encoding="utf-8")):
        train.setdefault(row["category"], []).append(row["title"])
    index = de.retriever.domain.neighbours_
    for c, text in zip(cands, shown, strict=True):
        near = index.examples(prod.text(), [c.id], 2)[0]
        assert len(near) == min(2, len(train[c.id])) and set(near) <= set(train[c.id])
        assert text == with_examples(de.candidate_text(c.id), near)
    rep = tmp_path / "report.json"
    _run(
        ["evaluate", work["model"], work["held"], "--strategy", "channel", *LLM, "--k", 3,
         "--threshold", 1.01, "--limit", 2, "--run-file", tmp_path / "run.jsonl", "--json", rep]
    )  # fmt: skip
    report = json.loads(rep.read_text())
    assert report["config"]["representation"] == "examples" and report["routed"] == 2
    assert all(len(set(r["llm_logprobs"])) == 3 for r in labelled_records(tmp_path / "run.jsonl"))


def test_evaluate_default_run_file_is_per_configuration(work, tmp_path, monkeypatch):
    """Without --run-file, runs with other settings must not reuse each other's records."""
    monkeypatch.chdir(tmp_path)
    base = ["evaluate", work["model"], work["held"], "--strategy", "score", *LLM,
            "--threshold", 0.0, "--limit", 3]  # fmt: skip
    for k in (2, 3):
        _run([*base, "--k", k, "--json", tmp_path / f"k{k}.json"])
    files = sorted((tmp_path / "runs").glob("eval-score-*.jsonl"))
    assert len(files) == 2
    assert sorted({len(r["candidates"]) for f in files for r in labelled_records(f)}) == [2, 3]


def test_evaluate_strategy_sends_the_candidates_classify_sends(work, tmp_path):
    """Without --k, `evaluate --strategy` shows the general expert as many candidates as
    `classify` does (not the 10 of the domain expert's own report), so it measures what
    `classify` ships; the domain report keeps its top-10."""
    common = [*LLM, "--strategy", "score", "--threshold", 0.0, "--limit", 3]
    rep, run = tmp_path / "dual.json", tmp_path / "run.jsonl"
    _run(["evaluate", work["model"], work["held"], *common, "--run-file", run, "--json", rep])
    out = tmp_path / "labelled.jsonl"
    _run(["classify", work["model"], work["held"], "--out", out, *common])
    shipped = {len(json.loads(x)["candidates"]) for x in out.read_text().splitlines()}
    assert shipped == {5} and json.loads(rep.read_text())["config"]["k"] == 5
    assert {len(r["candidates"]) for r in labelled_records(run)} == shipped
    domain = tmp_path / "domain.json"
    _run(["evaluate", work["model"], work["held"], "--json", domain])
    assert "top10" in json.dumps(json.loads(domain.read_text()))


def test_threshold_plots_and_chooses_on_the_dev_run(work, tmp_path):
    run, plot = tmp_path / "dev.jsonl", tmp_path / "fig5.png"
    res = _run(
        ["threshold", work["model"], work["held"], "--strategy", "score", *LLM, "--k", 3,
         "--limit", N, "--run-file", run, "--plot", plot]
    )  # fmt: skip
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recs = labelled_records(run)
    assert len(recs) == N and all(r["routed"] for r in recs)  # every dev product asked once
    weight, _ = choose_fusion_weight(recs)
    best = choose_threshold(threshold_curve(recs, weight=weight))
    out = " ".join(res.output.split())
    assert f"fusion weight {weight}" in out
    assert f"threshold {best['threshold']}: accuracy {best['accuracy']:.4f}" in out
