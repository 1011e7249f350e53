"""Scoring dual-expert runs: accuracy, F1, LLM cost, and what the LLM fixed or broke."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Product
from ..journal import read_records
from ..taxonomy import PATH_SEP
from .metrics import level_scores


def labelled_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a dual-expert run journal that carry a gold label."""
    return [r for r in read_records(path) if "gold" in r]


def summarise_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Scores of the dual expert against the domain expert alone on the same products."""
    if not records:
        raise ValueError("no labelled records to score")
    gold = [PATH_SEP.join(r["gold"]) for r in records]
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


def run_file_for(kind: str, strategy: str, representation: str, **config: Any) -> Path:
    """``runs/<kind>-<strategy>-<representation>-<hash>.jsonl`` for a dual-expert run.

    The hash covers the model (its path and its weights' mtime), the data file and every other
    setting given, so a rerun resumes its own records and never reuses those of another model,
    LLM or configuration. ``config`` must hold ``model`` and ``data`` (paths).
    """
    model = Path(config.pop("model"))
    weights = model / "model.safetensors"
    config["model"] = str(model.resolve())
    config["model_mtime"] = weights.stat().st_mtime if weights.exists() else None
    reranker = model / "reranker" / "dualexpert.json"  # a reranker added later changes the run
    config["reranker_mtime"] = reranker.stat().st_mtime if reranker.exists() else None
    config["data"] = str(Path(config["data"]).resolve())
    key = json.dumps({k: str(v) for k, v in config.items()}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path("runs") / f"{kind}-{strategy}-{representation}-{digest}.jsonl"


def run_dual(
    program: Any,
    products: Sequence[Product],
    run_file: str | Path,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Classify ``products`` into the run journal (resumable) and return their records.

    Args:
        program: a :class:`~dualexpert.pipeline.DualExpert`.
        products: labelled products.
        run_file: the JSONL journal; records of other products in it are ignored.
        progress: called with the number of products done after each chunk.

    Returns:
        The labelled records of ``products``, ready for :func:`summarise_records`.
    """
    from ..batch import classify_products

    classify_products(program, products, run_file, progress=progress)
    wanted = {p.id for p in products}
    return [r for r in labelled_records(run_file) if r["id"] in wanted]
