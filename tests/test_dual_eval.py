from __future__ import annotations

import json

from dualexpert.evaluation.dual import labelled_records, summarise_records


def _rec(top, chosen, gold, routed, calls=1):
    return {
        "category": chosen,
        "gold": gold.split(" > "),
        "routed": routed,
        "fallback": False,
        "candidates": [{"id": top, "probability": 0.5}],
        "usage": {"llm_calls": calls if routed else 0, "prompt_tokens": 100 if routed else 0},
        "seconds": 1.0 if routed else 0.01,
    }


def test_fixed_broken_and_costs(tmp_path):
    recs = [
        _rec("a > x", "a > y", "a > y", True),  # fixed
        _rec("a > x", "a > y", "a > x", True),  # broken
        _rec("a > x", "a > x", "a > x", False),  # confident, right
        _rec("a > z", "a > z", "a > x", False),  # confident, wrong
    ]
    f = tmp_path / "run.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n{torn")
    s = summarise_records(labelled_records(f))
    assert s["n"] == 4 and s["fixed"] == 1 and s["broken"] == 1 and s["routed"] == 2
    assert s["dual"]["accuracy"] == 0.5 and s["domain"]["accuracy"] == 0.5
    assert s["routed_dual_accuracy"] == 0.5 and s["routed_domain_accuracy"] == 0.5
    assert s["llm_calls_per_product"] == 0.5 and s["prompt_tokens_per_routed"] == 100
