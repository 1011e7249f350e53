"""Batch classification of a catalogue: incremental JSONL, resume, usage per product."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.usage_tracker import track_usage

from .data import Product


def done_ids(path: str | Path) -> set[str]:
    """Ids already written to a JSONL output (a torn last line is ignored)."""
    p = Path(path)
    ids: set[str] = set()
    if p.exists():
        with p.open(encoding="utf-8") as f:
            for line in f:
                try:
                    ids.add(json.loads(line)["id"])
                except (json.JSONDecodeError, KeyError):
                    continue
    return ids


def drop_torn_tail(path: str | Path) -> None:
    """Cut a torn last line (a killed run's half-written record), so appending is safe."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    with p.open("rb+") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        body = f.read()
        cut = body.rfind(b"\n") + 1
        try:  # a whole record that only lacks its newline is kept
            json.loads(body[cut:])
            f.write(b"\n")
        except ValueError:
            f.truncate(cut)


def _usage(tracker: Any) -> dict[str, int]:
    calls = sum(len(v) for v in tracker.usage_data.values())
    totals = tracker.get_total_tokens()
    prompt = sum(int(u.get("prompt_tokens") or u.get("input_tokens") or 0) for u in totals.values())
    completion = sum(
        int(u.get("completion_tokens") or u.get("output_tokens") or 0) for u in totals.values()
    )
    return {"llm_calls": calls, "prompt_tokens": prompt, "completion_tokens": completion}


def classify_products(
    program: dspy.Module,
    products: Iterable[Product],
    out: str | Path,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``program`` (e.g. a DualExpert) on each product, appending one JSON line each.

    Products whose id is already in ``out`` are skipped, so a killed run resumes where it
    stopped without duplicates. Returns totals: products done, LLM calls, tokens, seconds.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(out)  # else the first new record would be glued to the torn line
    skip = done_ids(out)
    totals = {
        "products": 0,
        "skipped": 0,
        "routed": 0,
        "fallback": 0,
        "llm_calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "seconds": 0.0,
    }
    with out.open("a", encoding="utf-8") as f:
        for prod in products:
            if prod.id in skip:
                totals["skipped"] += 1
                continue
            t0 = time.perf_counter()
            with track_usage() as tracker:
                pred = program(prod)
            secs = time.perf_counter() - t0
            usage = _usage(tracker)
            rec = {
                "id": prod.id,
                "title": prod.title,
                "category": pred.category,
                "path": pred.path,
                "routed": pred.routed,
                "route_reason": pred.route_reason,
                "decision": pred.decision,
                "fallback": pred.fallback,
                "reason": pred.reason,
                "ranking": pred.ranking,
                "candidates": pred.candidates,
                "llm_logprobs": pred.get("llm_logprobs"),
                "usage": usage,
                "seconds": round(secs, 4),
            }
            if prod.category is not None:
                rec["gold"] = list(prod.category)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            totals["products"] += 1
            totals["routed"] += int(pred.routed)
            totals["fallback"] += int(pred.fallback)
            totals["seconds"] += secs
            for k, v in usage.items():
                totals[k] += v
            if progress:
                progress(1)
    return totals
