"""Synthetic training products for rare leaves: cleaning, the resumable writer, loading, CLI."""

from __future__ import annotations

import json

import dspy
import pytest
from _dspy_fakes import fake_lm
from dspy.utils.exceptions import AdapterParseError
from typer.testing import CliRunner

from dualexpert.cli import app
from dualexpert.data import Product
from dualexpert.synthetic import (
    ProductWriter,
    clean_titles,
    load_synthetic,
    rare_leaves,
    write_synthetic,
)
from dualexpert.taxonomy import Taxonomy

A, B = ("Home", "Kitchen", "Kettles"), ("Home", "Kitchen", "Toasters")
C = ("Home", "Bath", "Towels")


def _catalogue() -> tuple[Taxonomy, list[Product]]:
    prods = [Product(id=f"a{i}", title=f"Electric kettle {i}", category=A) for i in range(12)]
    prods += [Product(id="b0", title="Two-slice toaster", category=B)]
    prods += [Product(id="c0", title="Cotton bath towel", category=C)]
    prods += [Product(id="c1", title="Hand towel set", category=C)]
    return Taxonomy.from_paths([A, B, C]), prods


def test_clean_titles_drops_copies_paths_repeats_and_odd_lengths():
    seen: set[str] = set()
    kept, rejected = clean_titles(
        [
            "1. Steel toaster",  # numbering stripped
            "- steel TOASTER",  # a case-folded repeat
            "Two-slice toaster",  # a copy of a real title
            "Home > Kitchen > Toasters",  # the path echoed
            "[{'category': 'Toasters'}]",  # a JSON fragment
            "Toasters",  # the leaf's name
            "ab",  # too short
            "x" * 201,  # too long
            '"Four-slice toaster"',
            "Toaster 1",
            "Toaster 2",  # the same template as "Toaster 1"
            "Product B",  # a placeholder
        ],
        forbidden=["two-slice toaster", "Toasters"],
        seen=seen,
    )
    assert kept == ["Steel toaster", "Four-slice toaster", "Toaster 1"]
    assert rejected == 9
    assert seen == {"steel toaster", "four slice toaster", "toaster"}


def test_rare_leaves_counts_labelled_products_per_leaf():
    tax, prods = _catalogue()
    ids = rare_leaves(tax, prods, min_count=10)
    assert [tax.get(i).path for i in ids] == [B, C]
    assert [tax.get(i).path for i in rare_leaves(tax, prods, min_count=2)] == [B]


def test_write_synthetic_asks_only_rare_leaves_cleans_and_resumes(tmp_path):
    tax, prods = _catalogue()
    out = tmp_path / "syn.jsonl"
    script = [
        {"titles": ["Steel toaster", "steel toaster", "Two-slice toaster"]},  # B, call 1
        {"titles": ["1. Four-slice toaster", "2. Retro toaster", "Long-slot toaster"]},  # B, 2
        {"titles": ["Beach towel", "Bath sheet", " ", "Guest towel"]},  # C, call 1: enough
    ]
    lm, engine = fake_lm(script=script)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        totals = write_synthetic(tax, prods, out, per_leaf=3, max_calls=2)
    assert totals["leaves"] == 2 and totals["written"] == 2 and totals["titles"] == 6
    assert totals["rejected"] == 3 and totals["failed_calls"] == 0
    assert len(engine.requests) == 3  # leaf A (12 products) is never asked
    assert all("Kettles" not in str(r) for r in engine.requests)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [tuple(r["category"]) for r in rows] == [B, C]
    assert rows[0]["titles"] == ["Steel toaster", "Four-slice toaster", "Retro toaster"]
    assert rows[1]["titles"] == ["Beach towel", "Bath sheet", "Guest towel"]

    # a rerun asks nothing; a leaf whose line is gone is asked again
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        again = write_synthetic(tax, prods, out, per_leaf=3, max_calls=2)
    assert again["skipped"] == 2 and again["written"] == 0 and len(engine.requests) == 3
    out.write_text(out.read_text().splitlines(keepends=True)[0])
    engine.script = [{"titles": ["Beach towel", "Bath sheet", " ", "Guest towel"]}]
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        third = write_synthetic(tax, prods, out, per_leaf=3, max_calls=2)
    assert third["skipped"] == 1 and third["written"] == 1 and len(engine.requests) == 4
    assert len(out.read_text().splitlines()) == 2


def test_a_failing_call_is_counted_and_the_run_goes_on(tmp_path):
    tax, prods = _catalogue()

    def program(category: str, **_):
        if "Toasters" in category:
            raise RuntimeError("rate limited")
        return dspy.Prediction(titles=["Beach towel", "Bath sheet"])

    def unparseable(category: str, **_):
        raise AdapterParseError("ChatAdapter", dspy.Signature("a -> b"), "garbage")

    out = tmp_path / "syn.jsonl"
    totals = write_synthetic(tax, prods, out, program=program, per_leaf=2, max_calls=2)
    assert totals["failed_calls"] == 2 and totals["failed_leaves"] == 1
    assert totals["written"] == 1
    rows = {tuple(r["category"]): r["titles"] for r in map(json.loads, out.open())}
    assert rows == {C: ["Beach towel", "Bath sheet"]}  # the failed leaf is not written...

    def recovered(category: str, **_):
        return dspy.Prediction(titles=["Retro toaster", "Steel toaster"])

    again = write_synthetic(tax, prods, out, program=recovered, per_leaf=2, max_calls=2)
    assert again["written"] == 1 and again["skipped"] == 1  # ...so a rerun asks it again
    rows = {tuple(r["category"]): r["titles"] for r in map(json.loads, out.open())}
    assert rows[B] == ["Retro toaster", "Steel toaster"]

    # an LLM whose answers do not parse has answered: the leaf is written empty, once
    other = tmp_path / "other.jsonl"
    t = write_synthetic(tax, prods, other, program=unparseable, per_leaf=2, max_calls=2)
    assert t["failed_calls"] == 4 and t["failed_leaves"] == 0 and t["written"] == 2
    assert all(json.loads(line)["titles"] == [] for line in other.open())


def test_an_unreachable_llm_stops_the_run_after_leaves_in_a_row(tmp_path):
    leaves = [("Home", "Garden", f"Tool {i}") for i in range(8)]
    tax = Taxonomy.from_paths(leaves)
    prods = [Product(id=str(i), title=f"thing {i}", category=p) for i, p in enumerate(leaves)]
    calls: list[str] = []

    def down(category: str, **_):
        calls.append(category)
        if len(calls) == 2:  # one answer between failures resets the count
            return dspy.Prediction(titles=["Garden rake"])
        raise ConnectionError("connection refused")

    out = tmp_path / "syn.jsonl"
    t = write_synthetic(tax, prods, out, program=down, max_calls=1, max_failed_in_row=3)
    assert t["written"] == 1 and t["failed_leaves"] == 4 and len(calls) == 5
    assert "3 leaves in a row" in t["stopped"] and "3 leaves not tried" in t["stopped"]
    rows = [json.loads(line) for line in out.open()]
    assert [r["titles"] for r in rows] == [["Garden rake"]]
    # a rerun resumes: the answered leaf is not asked again, every other one is
    calls.clear()
    again = write_synthetic(tax, prods, out, program=lambda **_: dspy.Prediction(titles=["Hoe"]))
    assert again["skipped"] == 1 and again["written"] == 7 and again["stopped"] is None


def test_train_synthesizes_by_default_and_goes_on_without_a_working_llm(tmp_path):
    """The default `train` asks the LLM for rare leaves; an LLM that cannot answer (here a model
    file that does not exist) is a warning and a model without synthetic products, while an
    explicit --synthesize makes it an error (exit 4)."""
    data = tmp_path / "rare.csv"
    rows = [f"{t} {j},Home > Garden > {t}s" for t in "Rake Hoe Spade Fork Shear Hose".split()
            for j in range(3)]  # fmt: skip
    data.write_text("title,category\n" + "\n".join(rows) + "\n")
    broken = ["--llm", str(tmp_path / "missing.gguf")]
    fast = ["--epochs", "0.05", "--max-length", "8", "--batch-size", "64"]
    m = tmp_path / "m"
    res = CliRunner().invoke(app, ["train", str(data), "--out", str(m), *broken, *fast])
    out = " ".join(res.output.split())
    assert res.exit_code == 0, out
    assert "synthesize stopped early: the LLM failed on 5 leaves in a row" in out
    assert "training with what was written" in out
    manifest = json.loads((m / "dualexpert.json").read_text())
    assert manifest["prior_adjustment"] == 0.0  # no synthetic products, so the prior stays
    assert not (tmp_path / "m.synthetic.jsonl").read_text().strip()

    res = CliRunner().invoke(
        app, ["train", str(data), "--out", str(tmp_path / "e"), "--synthesize",
              *broken, *fast],
    )  # fmt: skip
    assert res.exit_code == 4, res.output
    assert "synthesize stopped early" in " ".join(res.output.split())
    assert not (tmp_path / "e").exists()

    # under a plain torchrun every process would write the file: asking for it is refused
    res = CliRunner().invoke(
        app, ["train", str(data), "--out", str(tmp_path / "t"), "--synthesize", *fast],
        env={"WORLD_SIZE": "2", "RANK": "1"},
    )  # fmt: skip
    assert res.exit_code == 2 and "under torchrun" in " ".join(res.output.split())


def test_product_writer_sends_sampling_settings_and_the_count():
    lm, engine = fake_lm(script=[{"titles": ["- Steel toaster", "Retro toaster"]}])
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        pred = ProductWriter(temperature=0.7)(
            category="Toasters", path="Home > Kitchen > Toasters", count=5, seed=3
        )
    assert pred.titles == ["- Steel toaster", "Retro toaster"]  # cleaned by the caller
    req = engine.requests[0]
    assert req.config.temperature == 0.7 and req.config.seed == 3
    assert "5" in str(req.messages[-1]) and "(none)" in str(req.messages[-1])


def test_load_synthetic_makes_products_and_names_a_bad_line(tmp_path):
    tax, _ = _catalogue()
    f = tmp_path / "syn.jsonl"
    f.write_text(
        json.dumps({"id": "t", "category": list(B), "titles": ["Steel toaster", " "]}) + "\n"
    )
    prods = load_synthetic(f, tax)
    assert prods == [Product(id="syn:t:0", title="Steel toaster", category=B)]
    with f.open("a") as fh:
        fh.write(json.dumps({"id": "x", "category": ["Home", "Garden"], "titles": ["Rake"]}))
        fh.write("\n")
    with pytest.raises(ValueError, match=r"line 2 \(leaf x\): field 'category'"):
        load_synthetic(f, tax)
    assert len(load_synthetic(f)) == 2  # without a taxonomy nothing is checked
    f.write_text(json.dumps({"id": "y", "titles": []}) + "\n")
    with pytest.raises(ValueError, match="line 1: field 'category'"):
        load_synthetic(f)
    f.write_text(json.dumps({"id": "z", "category": list(B), "titles": "Rake"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1 \(leaf z\): field 'titles' is not a list"):
        load_synthetic(f)


def test_train_refuses_a_synthetic_leaf_outside_the_label_space(tmp_path, demo_catalogue):
    bad = tmp_path / "syn.jsonl"
    bad.write_text(json.dumps({"id": "x", "category": ["Nowhere"], "titles": ["Rake"]}) + "\n")
    res = CliRunner().invoke(
        app, ["train", str(demo_catalogue), "--out", str(tmp_path / "m"), "--synthetic", str(bad)]
    )
    assert res.exit_code == 2, res.output
    assert "line 1 (leaf x): field 'category'" in res.output
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_synthesize_through_a_server_killed_then_resumed(tmp_path, server):
    """The CLI against a real OpenAI-compatible server on loopback (SmolLM2), SIGKILLed once a
    leaf is written, then rerun: every rare leaf is in the file exactly once, and
    `train --synthetic` accepts the file."""
    import subprocess
    import sys

    from kill_and_resume import kill_twice_then_finish

    data = tmp_path / "cat.csv"
    rows = ["id,title,description,category"]
    rows += [f"k{i},Electric kettle {i},,Home > Kitchen > Kettles" for i in range(3)]
    rows += ["t0,Two-slice toaster,,Home > Kitchen > Toasters"]
    rows += ["w0,Cotton bath towel,,Home > Bath > Towels"]
    rows += ["s0,Shower curtain,,Home > Bath > Curtains"]
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "syn.jsonl"
    cmd = [sys.executable, "-m", "dualexpert.cli", "synthesize", str(data), "--out", str(out)]
    cmd += ["--llm", "openai/smollm2", "--api-base", server, "--min-count", "2"]
    cmd += ["--per-leaf", "3", "--max-calls", "1"]
    res = kill_twice_then_finish(cmd, out, waits=(1, 2))
    totals = json.loads(res.stderr[res.stderr.rindex("{") :].replace("\n", ""))
    assert totals["leaves"] == 3 and totals["skipped"] + totals["written"] == 3
    rows_out = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["category"][-1] for r in rows_out) == ["Curtains", "Toasters", "Towels"]
    # SmolLM2-135M rarely writes usable titles; whatever it wrote passed the filter
    real = {"two-slice toaster", "cotton bath towel"}
    for r in rows_out:
        assert all(t.casefold() not in real for t in r["titles"])
        assert all(not set(t) & set("<>{}[]") and 3 <= len(t) <= 200 for t in r["titles"])
    # `train --synthesize`: the same through the server, then training, in one command
    m = tmp_path / "m"
    train = [sys.executable, "-m", "dualexpert.cli", "train", str(data), "--out", str(m)]
    train += ["--synthesize", "--llm", "openai/smollm2", "--api-base", server]
    train += ["--epochs", "0.1", "--max-length", "8"]
    res = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    written = [json.loads(line) for line in (tmp_path / "m.synthetic.jsonl").open()]
    assert len(written) == 4  # every leaf has fewer than 10 products
    n_titles = sum(len(r["titles"]) for r in written)
    assert f"added {n_titles} synthetic products" in res.stderr.replace("\n", " ")
    manifest = json.loads((m / "dualexpert.json").read_text())
    counts = dict(zip(manifest["classes"], manifest["class_counts"], strict=True))
    assert sorted(counts.values()) == [1, 1, 1, 3]  # the real products only
    assert manifest["prior_adjustment"] == (1.0 if n_titles else 0.0)
