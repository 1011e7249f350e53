"""benchmarks/dual_expert.py at tiny size with SmolLM2: the demo catalogue written in MWPD's
format, three configurations (one with LLM-written summaries), a table, and a resumed rerun."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from _dspy_fakes import tiny_domain_expert

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dual_expert.py"


def _as_mwpd(products, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for p in products:
            lv = p.category
            row = {"ID": p.id, "Name": p.title, "Description": p.description or ""}
            row.update({"lvl1": lv[0], "lvl2": lv[1], "lvl3": lv[2]})
            f.write(json.dumps(row) + "\n")


def test_dual_benchmark_tiny(tmp_path, capsys, monkeypatch):
    from dualexpert.demo import split_demo

    monkeypatch.setenv("DUALEXPERT_LLM_THREADS", "2")
    spec = importlib.util.spec_from_file_location("bench_dual", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tiny_domain_expert(tmp_path / "domain")
    train, test = split_demo(seed=0)
    data = tmp_path / "data"
    data.mkdir()
    _as_mwpd(train, data / "train.jsonl")
    _as_mwpd(test, data / "validation.jsonl")
    out = tmp_path / "out"
    argv = ["--model", str(tmp_path / "domain"), "--data", str(data), "--out", str(out)]
    argv += ["--llm", "smollm2", "--k", "3", "--dev-size", "8", "--test-size", "10"]
    argv += ["--traffic", "0.5", "--summary-tokens", "24", "--n-examples", "2"]
    argv += ["--configs", "score:path,zero_shot:leaf,score:summary"]
    res = bench.main(argv)

    names = [r["system"] for r in res["rows"]]
    assert names[0] == "domain expert alone" and "dual, zero_shot, leaf" in names
    assert any(n.startswith("dual, score, path, fused (w=") for n in names)
    assert any(n.startswith("dual, score, summary, fused (w=") for n in names)
    alone, rows = res["rows"][0], res["rows"][1:]
    assert alone["routed"] == 0 and alone["llm_calls_per_product"] == 0
    routed = rows[0]["routed"]
    assert 0 < routed <= 10 and all(r["routed"] == routed for r in rows)  # one threshold
    for r in rows:
        assert r["fixed"] <= routed and r["broken"] <= routed
        assert 0 <= r["dual"]["accuracy"] <= 1
    # summaries were written for the routed products' candidates only, through the journal
    meta = json.loads((out / "summaries" / "meta.json").read_text())
    assert meta and (out / "summaries" / "journal.jsonl").exists()
    table = capsys.readouterr().out
    assert "| domain expert alone | 0 |" in table and "| dual, zero_shot, leaf |" in table

    # a rerun resumes from the records: the same rows, and no product is classified again
    before = {p.name: p.read_text() for p in out.glob("*.jsonl")}
    again = bench.main(argv)
    assert [r["system"] for r in again["rows"]] == names
    assert {p.name: p.read_text() for p in out.glob("*.jsonl")} == before
    table_rows = bench.main([*argv, "--table"])["rows"]
    assert json.dumps(table_rows) == json.dumps(again["rows"])  # NaN-safe comparison
