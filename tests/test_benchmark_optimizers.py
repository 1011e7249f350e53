"""benchmarks/optimizers.py at tiny size on the demo catalogue with SmolLM2: two optimisers,
a table, and a JSON record per optimiser."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from _dspy_fakes import tiny_domain_expert

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "optimizers.py"


def test_two_optimisers_on_the_demo_catalogue(tmp_path, demo_catalogue, capsys):
    spec = importlib.util.spec_from_file_location("bench_optimizers", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tiny_domain_expert(tmp_path / "domain")
    records = bench.main(
        ["--model", str(tmp_path / "domain"), "--data", str(demo_catalogue), "--columns", "none"]
        + ["--optimizers", "bootstrap,gepa", "--llm", "smollm2", "--k", "3", "--max-p", "1.01"]
        + ["--n-train", "2", "--n-dev", "1", "--max-calls", "12"]
        + ["--setting", "gepa.reflection_minibatch_size=1", "--tag", "t"]
        + ["--results", str(tmp_path / "results")]
    )
    assert [r["optimizer"] for r in records] == ["bootstrap", "gepa"]
    saved = json.loads((tmp_path / "results" / "t.json").read_text())
    assert [r["optimizer"] for r in saved] == ["bootstrap", "gepa"]
    for r in saved:
        assert r["n_train"] == 2 and r["n_dev"] == 1 and 0 < r["calls"] <= 12
        assert set(r["before"]) == set(r["after"]) == {"exact", "hierarchical", "mrr"}
        assert Path(r["path"]).exists() and r["llm"] == "smollm2"
    assert saved[1]["settings"]["reflection_minibatch_size"] == 1
    out = capsys.readouterr().out
    assert "| bootstrap | 2 | 1 |" in out and "| gepa | 2 | 1 |" in out
