"""benchmarks/relevance.py keeps the rows of parallel runs that share an --out folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "relevance.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_relevance", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_parallel_seed_runs_do_not_overwrite_each_other(tmp_path):
    bench = _bench()
    # two processes started from the same (empty) file, each running one seed
    a = {"setup": {"train": 10}, "ce": {"runs": {}}}
    b = {"setup": {"train": 10}, "ce": {"runs": {}}}
    a["ce"]["runs"]["0"] = {"roc_auc": 0.6}
    bench._store(tmp_path, a)
    b["ce"]["runs"]["1"] = {"roc_auc": 0.7}
    b["lexical_lr"] = {"mean": {"roc_auc": 0.5}}
    bench._store(tmp_path, b)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["ce"]["runs"] == {"1": {"roc_auc": 0.7}, "0": {"roc_auc": 0.6}}
    assert saved["lexical_lr"]["mean"]["roc_auc"] == 0.5
    # a's next write takes in b's seed and system too
    a["ce"]["runs"]["2"] = {"roc_auc": 0.8}
    bench._store(tmp_path, a)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert sorted(saved["ce"]["runs"]) == ["0", "1", "2"] and "lexical_lr" in saved


def test_a_rerun_replaces_its_own_seed(tmp_path):
    bench = _bench()
    bench._store(tmp_path, {"ce": {"runs": {"0": {"roc_auc": 0.6}}}})
    bench._store(tmp_path, {"ce": {"runs": {"0": {"roc_auc": 0.9}}}})
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["ce"]["runs"]["0"]["roc_auc"] == 0.9


def test_summaries_cover_every_saved_seed(tmp_path):
    # a process that started with two seeds on disk must not write back a two-seed summary
    bench = _bench()
    bench._store(tmp_path, {"ce": {"runs": {"0": {"roc_auc": 0.6}, "1": {"roc_auc": 0.7}}}})
    bench._store(tmp_path, {"ce": {"runs": {"2": {"roc_auc": 0.8}}}})
    stale = {"ce": {"runs": {"0": {"roc_auc": 0.6}}, "mean": {"roc_auc": 0.6}}}
    bench._store(tmp_path, stale)
    saved = json.loads((tmp_path / "results.json").read_text())["ce"]
    assert abs(saved["mean"]["roc_auc"] - 0.7) < 1e-9
    assert saved["ci95"]["roc_auc"] > 0 and saved["interval"] == "t over 3 seeds"


def test_summaries_skip_text_fields(tmp_path):
    # a run records what its warm start learned from ("recombined"): kept, not averaged
    bench = _bench()
    run = {"roc_auc": 0.6, "warm_start_source": "recombined", "warm_start_pairs": 8000}
    bench._store(tmp_path, {"ce": {"runs": {"0": run}}})
    saved = json.loads((tmp_path / "results.json").read_text())["ce"]
    assert saved["runs"]["0"] == run and saved["mean"]["warm_start_pairs"] == 8000
    assert "warm_start_source" not in saved["mean"]


def test_query_auc_orders_within_queries_only():
    from dualexpert.relevance import RelevancePair

    bench = _bench()
    pairs = [
        RelevancePair(id=str(i), query=q, title="t", label=y)
        for i, (q, y) in enumerate([("a", 1), ("a", 0), ("b", 1), ("b", 0), ("c", 1)])
    ]
    # within each query the relevant pair scores higher, though "b" is low overall
    prob = [0.9, 0.8, 0.2, 0.1, 0.5]
    assert bench.query_auc(pairs, prob) == 1.0  # "c" has one label: left out
    assert bench.query_auc(pairs, [0.1, 0.9, 0.2, 0.1, 0.5]) == 0.5


def test_learning_curve_table_and_epochs(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("curve", SCRIPT.parent / "relevance_curve.py")
        curve = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(curve)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert [curve.epochs_for(n, 3000) for n in (250, 500, 1000, 4000, 60000)] == [8, 6, 3, 1, 1]
    pts = {"prior": {"250": {"roc_auc": 0.68, "ci95": 0.02, "seeds": None}},
           "ce": {"250": {"roc_auc": 0.57, "ci95": 0.0, "seeds": 1},
                  "500": {"roc_auc": 0.60, "ci95": 0.01, "seeds": 3}}}  # fmt: skip
    curve.print_curve(pts)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["roc_auc", "250", "500"]
    assert out[1].split() == ["prior", "0.6800±0.020", "-"]
    assert out[2].split() == ["ce", "0.5700", "0.6000±0.010"]  # one seed: no interval
    pts["ce"]["500"]["query_auc"] = 0.55
    curve.print_curve(pts, "query_auc")  # no interval; a cell without the metric is "-"
    out = capsys.readouterr().out.splitlines()
    assert [line.split() for line in out] == [
        ["query_auc", "250", "500"],
        ["prior", "-", "-"],
        ["ce", "-", "0.5500"],
    ]
    # --also: another run's rows fill only the cells the main folder lacks
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text(json.dumps({
        "setup": {"train": 500, "epochs": 3},
        "ce": {"mean": {"roc_auc": 0.1}, "runs": {"0": {}}},
        "distilled": {"mean": {"roc_auc": 0.61, "query_auc": 0.58}, "ci95": {"roc_auc": 0.02},
                      "runs": {"0": {}, "1": {}}},
    }))  # fmt: skip
    extra = curve.parse_also([f"500={tmp_path / 'other'}"])
    curve.add_cells(pts, "500", tmp_path / "other", curve.load(extra[500][0]))
    assert pts["ce"]["500"]["roc_auc"] == 0.60  # kept
    assert pts["distilled"]["500"] == {
        "roc_auc": 0.61, "query_auc": 0.58, "ci95": 0.02, "seeds": 2, "epochs": 3,
        "source": str(tmp_path / "other"),
    }  # fmt: skip
    with pytest.raises(SystemExit, match="SIZE=FOLDER"):
        curve.parse_also([f"x={tmp_path}"])
    curve.plot(pts, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_trained_systems_are_compared_with_the_baseline_seed_by_seed(tmp_path, capsys):
    # bar 2 is a paired comparison: the same seeds, the difference per seed, then its interval
    from scipy import stats

    bench = _bench()
    base = {"0": {"roc_auc": 0.70, "query_auc": 0.64}, "1": {"roc_auc": 0.71, "query_auc": 0.65}}
    tags = {
        "0": {"roc_auc": 0.705, "query_auc": 0.63},
        "1": {"roc_auc": 0.708, "query_auc": 0.66},
        "2": {"roc_auc": 0.9, "query_auc": 0.9},  # no baseline run for seed 2: left out
    }
    bench._store(tmp_path, {bench.BASELINE: {"runs": base}, "tags": {"runs": tags}})
    saved = json.loads((tmp_path / "results.json").read_text())
    row = saved[bench.PAIRED]["tags"]
    assert row["roc_auc"]["by_seed"] == pytest.approx({"0": 0.5, "1": -0.2})
    assert row["roc_auc"]["mean"] == pytest.approx(0.15)
    half = stats.t.ppf(0.975, 1) * stats.tstd([0.5, -0.2]) / 2**0.5
    assert row["roc_auc"]["ci95"] == pytest.approx(half)
    assert row["query_auc"]["by_seed"] == pytest.approx({"0": -1.0, "1": 1.0})
    assert "cross_roc_auc" not in row and bench.BASELINE not in saved[bench.PAIRED]
    bench.print_table(saved)
    assert "+0.15 ±" in capsys.readouterr().out
    # a comparison left in the file by an earlier write is not carried over without its runs
    (tmp_path / "results.json").write_text(json.dumps({bench.PAIRED: row, "tags": {"runs": tags}}))
    bench._store(tmp_path, {"tags": {"runs": tags}})
    assert bench.PAIRED not in json.loads((tmp_path / "results.json").read_text())
