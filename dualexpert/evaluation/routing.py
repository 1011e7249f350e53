"""Choosing the routing threshold and the fusion weight on a dev set (paper Appendix A.1).

Work from records where every dev product went through the LLM once (``threshold > 1``): each
record holds the domain expert's candidates with probabilities, the LLM's ranking and the gold
path. Any threshold and fusion weight can then be scored without calling the LLM again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..taxonomy import PATH_SEP


def fused_choice(record: dict[str, Any], weight: float | None) -> str:
    """The category the pipeline would output for this record with fusion ``weight``.

    Uses the LLM's log-probabilities over the candidates when the record has them (strategy
    ``score``), else minus the LLM's rank, as :class:`~dualexpert.pipeline.DualExpert` does.
    """
    cands = record["candidates"]
    if record.get("fallback") or not record.get("ranking"):
        return cands[0]["id"]
    if weight is None:
        return record["ranking"][0]
    logp = record.get("llm_logprobs")
    if logp is not None:
        llm = {c["id"]: float(lp) for c, lp in zip(cands, logp, strict=True)}
    else:
        llm = {cid: -float(r) for r, cid in enumerate(record["ranking"])}
    return max(
        cands,
        key=lambda c: math.log(max(c["probability"], 1e-12)) + weight * llm.get(c["id"], -99.0),
    )["id"]


def _gold_id(record: dict[str, Any]) -> str:
    return PATH_SEP.join(record["gold"]) if "gold_id" not in record else record["gold_id"]


def threshold_curve(
    records: Sequence[dict[str, Any]],
    thresholds: Sequence[float] | None = None,
    weight: float | None = None,
) -> list[dict[str, float]]:
    """Accuracy and LLM traffic for each threshold (products with top-1 p < t go to the LLM)."""
    if thresholds is None:
        thresholds = [round(x, 3) for x in np.linspace(0.0, 1.0, 21)] + [1.001]
    p = np.array([r["candidates"][0]["probability"] for r in records])
    gold = [_gold_id(r) for r in records]
    dom = np.array([r["candidates"][0]["id"] == g for r, g in zip(records, gold, strict=True)])
    llm = np.array([fused_choice(r, weight) == g for r, g in zip(records, gold, strict=True)])
    out = []
    for t in thresholds:
        routed = p < t
        acc = np.where(routed, llm, dom).mean() if len(p) else 0.0
        out.append(
            {
                "threshold": float(t),
                "accuracy": float(acc),
                "llm_traffic": float(routed.mean()) if len(p) else 0.0,
                "routed_llm_accuracy": float(llm[routed].mean()) if routed.any() else math.nan,
                "routed_domain_accuracy": float(dom[routed].mean()) if routed.any() else math.nan,
            }
        )
    return out


def choose_threshold(
    curve: Sequence[dict[str, float]], max_traffic: float = 1.0
) -> dict[str, float]:
    """The point of best accuracy within the traffic cap; ties go to less traffic."""
    ok = [c for c in curve if c["llm_traffic"] <= max_traffic] or list(curve)
    return max(ok, key=lambda c: (round(c["accuracy"], 6), -c["llm_traffic"]))


def choose_fusion_weight(
    records: Sequence[dict[str, Any]], weights: Sequence[float] = (0.0, 0.25, 0.5, 1, 2, 4, 8)
) -> tuple[float | None, dict[str, float]]:
    """The fusion weight (or ``None``, the LLM's pick as is) with the best routed accuracy."""
    gold = [_gold_id(r) for r in records]
    scores: dict[str, float] = {}
    best: tuple[float, float | None] = (-1.0, None)
    for w in [None, *weights]:
        acc = float(np.mean([fused_choice(r, w) == g for r, g in zip(records, gold, strict=True)]))
        scores["llm" if w is None else str(w)] = acc
        if acc > best[0]:
            best = (acc, w)
    return best[1], scores


def plot_curve(
    curve: Sequence[dict[str, float]], path: str | Path, title: str = "", xscale: str = "linear"
) -> Path:
    """Accuracy and LLM traffic against the threshold (Figure 5).

    ``xscale="logit"`` spreads thresholds close to 1 (a confident domain expert); points
    outside (0, 1) are then left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [c["threshold"] for c in curve]
    if xscale == "logit":  # (0, 1) only; thresholds a hair below 1 are drawn at 1 - 1e-6
        curve = [c for c in curve if 0.0 < c["threshold"] < 1.0]
        t = [min(c["threshold"], 1 - 1e-6) for c in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.set_xscale(xscale)
    ax.plot(t, [c["accuracy"] for c in curve], marker="o", label="accuracy")
    ax.set_xlabel("confidence threshold")
    ax.set_ylabel("accuracy")
    ax2 = ax.twinx()
    ax2.plot(
        t, [c["llm_traffic"] for c in curve], color="tab:orange", marker="s", label="LLM traffic"
    )
    ax2.set_ylabel("share of products sent to the LLM")
    if xscale == "logit" and t:
        ax.set_xlim(min(t) / 1.5, 1 - (1 - max(t)) / 1.5)
    fig.legend(loc="lower center", ncol=2)
    ax.set_title(title or "accuracy and LLM traffic against the routing threshold")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
