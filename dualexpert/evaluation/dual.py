"""Scoring dual-expert runs: accuracy, F1, LLM cost, and what the LLM fixed or broke."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import level_scores


def read_records(path: str | Path) -> list[dict[str, Any]]:
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of an interrupted run
    return [r for r in out if "gold" in r]


def summarise_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Scores of the dual expert against the domain expert alone on the same products."""
    if not records:
        raise ValueError("no labelled records to score")
    gold = [" > ".join(r["gold"]) for r in records]
    dual = [r["category"] for r in records]
    dom = [r["candidates"][0]["id"] for r in records]
    routed = np.array([bool(r["routed"]) for r in records])
    d_ok = np.array([a == g for a, g in zip(dom, gold, strict=True)])
    x_ok = np.array([a == g for a, g in zip(dual, gold, strict=True)])
    n_routed = int(routed.sum())
    return {
        "n": len(records),
        "dual": level_scores(gold, dual),
        "domain": level_scores(gold, dom),
        "routed": n_routed,
        "routed_share": n_routed / len(records),
        "routed_dual_accuracy": float(x_ok[routed].mean()) if n_routed else float("nan"),
        "routed_domain_accuracy": float(d_ok[routed].mean()) if n_routed else float("nan"),
        "fixed": int((x_ok & ~d_ok).sum()),
        "broken": int((~x_ok & d_ok).sum()),
        "fallback": int(sum(bool(r.get("fallback")) for r in records)),
        "llm_calls_per_product": float(np.mean([r["usage"]["llm_calls"] for r in records])),
        "prompt_tokens_per_routed": (
            float(np.mean([r["usage"]["prompt_tokens"] for r in records if r["routed"]]))
            if n_routed
            else 0.0
        ),
        "seconds_per_product": float(np.mean([r["seconds"] for r in records])),
    }
