"""Evaluate a domain expert (or any top-K ranker) on a labelled catalogue."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..data import Product
from .metrics import categorisation_report


def evaluate_domain_expert(
    expert: Any,
    products: Sequence[Product],
    train_counts: Counter | None = None,
    k: int = 10,
) -> dict[str, Any]:
    """Per-level scores, top-K recall, head/tail split and throughput for a fitted expert."""
    labelled = [p for p in products if p.category is not None]
    if not labelled:
        raise ValueError("no labelled products to evaluate on")
    t0 = time.perf_counter()
    topk = expert.predict_topk(labelled, k=k)
    secs = time.perf_counter() - t0
    report = categorisation_report(
        [p.category for p in labelled],
        [c[0].path for c in topk],
        [[c.path for c in cands] for cands in topk],
        train_counts,
        ks=[x for x in (1, 3, 5, 10) if x <= k],
    )
    report["speed"] = {
        "products": len(labelled),
        "seconds": secs,
        "products_per_second": len(labelled) / secs if secs else 0.0,
        "batch_size": getattr(getattr(expert, "config", None), "eval_batch_size", None),
    }
    return report
