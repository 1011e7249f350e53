"""benchmarks/categorisation_report.py: the end-to-end rows of the default as shipped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "categorisation_report.py"
COLS = ("lvl3 acc", "lvl3 wF1", "lvl3 mF1", "head mF1", "tail mF1", "avg wF1")


def _report(results: Path):
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPT)
    rep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rep)
    rep.RESULTS = results
    return rep


def _scores(v: float, **extra) -> dict:
    return {c: v for c in COLS} | extra


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_shipped_rows_pair_each_seed_with_its_own_baselines(tmp_path):
    model = "domain_expert@x"
    # seeds written in another order than the baselines', so pairing by position would be wrong
    tier = {42: 0.80, 43: 0.82}
    fused = {42: 0.81, 43: 0.84}
    encoder = {43: 0.70, 42: 0.75}
    for s in (43, 42):
        _write(
            tmp_path
            / f"disagreement/disagreement-mwpd-{model}-s{s}-k5-confidence-channel-ex2-t0.8.json",
            {
                "meta": {"llm_calls_per_product_all_routed": 0.05, "llm_seconds_per_asked": 10.0},
                "rows": {
                    "domain expert, shipped (fused), no LLM": _scores(tier[s]),
                    "LLM pick alone": _scores(tier[s], fixed=1, broken=2),
                    "fused with the LLM, w=0.3": _scores(fused[s], fixed=3, broken=1),
                },
            },
        )
        suffix = "" if s == 42 else f"-s{s}"
        _write(
            tmp_path / f"mwpd/domain_expert@x{suffix}.json",
            {"timing": {"fit_seconds": 600.0, "products_per_second": 2.0}},
        )
    _write(tmp_path / "fusion-mwpd@4ep-ctx.json", {"runs": [
        {"seed": s, "rows": {"domain expert alone (encoder)": _scores(v)}}
        for s, v in encoder.items()
    ]})  # fmt: skip
    _write(tmp_path / "fusion-mwpd@4ep-ctx-nn.json", {"runs": [
        {"seed": s, "rows": {"shipped: + neighbours": _scores(0.79)}} for s in (42, 43)
    ]})  # fmt: skip
    rows = _report(tmp_path).shipped_rows(model, (42, 43, 44))
    assert [r["seeds"] for r in rows] == [2, 2, 2]
    tier_row, pick_row, end = rows
    assert tier_row["lvl3 wF1"] == pytest.approx(0.81)
    assert end["lvl3 wF1"] == pytest.approx(0.825)
    # fused minus encoder by seed: 42: +6, 43: +14 points (paired by position in the files,
    # +11 and +9: the same mean, a much narrower interval)
    assert "lvl3 wF1 +10.00 ± 50.82" in end["note"]
    # minus the tier alone: +1 and +2 points, 6 fixed and 2 broken over the two seeds
    assert "minus the tier alone: lvl3 wF1 +1.50" in end["note"]
    assert "6 fixed, 2 broken" in end["note"]
    assert "2 fixed, 4 broken" in pick_row["note"]
    # minus the tier with no LLM at all (0.79 on both seeds): +2 and +5 points
    assert "no synthetic products, tau 0): lvl3 wF1 +3.50" in end["note"]
    # the whole system's rate: 1 / (1/2 + 0.05 * 10) products/s
    assert end["products_s"] == pytest.approx(1.0)
    assert end["train_min"] == pytest.approx(10.0)


def test_shipped_rows_are_empty_without_the_runs(tmp_path):
    assert _report(tmp_path).shipped_rows() == []


def _report_file(path: Path, v: float) -> None:
    """A domain_expert.py result with every level at ``v``."""
    level = {"accuracy": v, "f1_weighted": v, "f1_macro": v}
    _write(path, {"lvl1": level, "lvl2": level, "lvl3": level,
                  "timing": {"fit_seconds": 1200.0, "products_per_second": 4.0}})  # fmt: skip


def test_bigbasket_shipped_rows_pair_each_seed_with_its_own_split(tmp_path):
    model = "domain_expert@x"
    tier = {42: 0.75, 43: 0.74, 44: 0.76}
    tfidf = {42: 0.73, 43: 0.74, 44: 0.73}
    for s in (42, 43, 44):
        suffix = "" if s == 42 else f"-s{s}"
        _report_file(tmp_path / f"bigbasket/{model}{suffix}.json", tier[s])
        _report_file(tmp_path / f"bigbasket/tfidf_linear@2ep{suffix}.json", tfidf[s])
    rep = _report(tmp_path)
    (tier_row,) = rep.bigbasket_shipped_rows(model, (42, 43, 44))  # no LLM run yet: one row
    assert tier_row["seeds"] == 3
    # +2, 0, +3 points by seed
    assert "lvl3 acc +1.67" in tier_row["note"]
    # the channel on seed 43 only: its end-to-end row pairs with seed 43's split, not seed 42's
    _write(
        tmp_path
        / f"disagreement/disagreement-bigbasket-{model}-s43-k5-confidence-channel-ex2-t0.8.json",
        {
            "meta": {"llm_calls_per_product_all_routed": 0.05, "llm_seconds_per_asked": 5.0},
            "rows": {
                "domain expert, shipped (fused), no LLM": _scores(0.74),
                "fused with the LLM, w=0.3": _scores(0.745, fixed=4, broken=1),
            },
        },
    )
    rows = rep.bigbasket_shipped_rows(model, (42, 43, 44))
    assert len(rows) == 2
    end = rows[1]
    assert end["seeds"] == 1
    assert "seeds 43;" in end["note"]
    assert "minus TF-IDF on the same split, points (paired by seed): lvl3 acc +0.50" in end["note"]
    assert "minus the tier alone: lvl3 wF1 +0.50" in end["note"]
    assert "4 fixed, 1 broken" in end["note"]
    # the whole system's rate: 1 / (1/4 + 0.05 * 5) products/s
    assert end["products_s"] == pytest.approx(2.0)


def test_hosted_rule_rows_compare_each_showing_with_its_own_tier(tmp_path):
    model = "domain_expert@x"
    picks = {"": (0.78, 1, 3), "-ex2": (0.80, 0, 0)}  # (wF1 of the pick, fixed, broken)
    for shown, (v, fixed, broken) in picks.items():
        for s in (42, 43):
            _write(
                tmp_path / f"disagreement/disagreement-mwpd-{model}-s{s}-k5-confidence-zero_shot"
                f"{shown}.json",
                {
                    "meta": {
                        "asked": 100,
                        "routed": 200,
                        "llm_seconds_per_asked": 8.0,
                        "llm_calls_per_product_all_routed": 0.05,
                    },  # fmt: skip
                    "rows": {
                        "domain expert, shipped (fused), no LLM": _scores(0.80),
                        "LLM pick alone": _scores(v, fixed=fixed, broken=broken),
                        "fused with the LLM, w=0.25": _scores(0.81, fixed=2, broken=1),
                    },
                },
            )
    rows = _report(tmp_path).hosted_rule_rows(model, (42, 43, 44))
    # names and the examples, each as its pick and fused; no inline runs: no rows for them
    assert len(rows) == 4
    names_pick, names_fused, ex_pick, _ = rows
    assert names_pick["seeds"] == 2 and "names, its pick as is" in names_pick["system"]
    assert "minus the tier alone: lvl3 wF1 -2.00" in names_pick["note"]
    assert "2 fixed, 6 broken" in names_pick["note"]
    assert "minus the tier alone: lvl3 wF1 +1.00" in names_fused["note"]
    assert "one a line" in ex_pick["system"] and "0 fixed, 0 broken" in ex_pick["note"]
    # no timed tier in tmp_path: no whole-system rate
    assert names_pick["products_s"] is None
    assert names_pick["llm_calls"] == pytest.approx(0.05)
