"""Categorisation metrics per hierarchy level, top-K recall and a head/tail breakdown.

Built on scikit-learn; no torch, no DSPy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from ..taxonomy import PATH_SEP


def level_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Accuracy plus weighted and macro precision / recall / F1 (macro over gold labels)."""
    labels = sorted(set(gold))
    out = {"accuracy": float(accuracy_score(gold, pred)), "n": len(gold)}
    for avg in ("weighted", "macro"):
        p, r, f, _ = precision_recall_fscore_support(
            gold, pred, labels=labels, average=avg, zero_division=0
        )
        out[f"precision_{avg}"] = float(p)
        out[f"recall_{avg}"] = float(r)
        out[f"f1_{avg}"] = float(f)
    return out


def topk_recall(
    gold: Sequence[str], ranked: Sequence[Sequence[str]], ks: Sequence[int]
) -> dict[str, float]:
    """Share of items whose gold label is within the first k of its ranking."""
    out = {}
    for k in ks:
        hits = [g in r[:k] for g, r in zip(gold, ranked, strict=True)]
        out[f"top{k}_recall"] = float(np.mean(hits)) if hits else 0.0
    return out


def categorisation_report(
    gold_paths: Sequence[Sequence[str]],
    pred_paths: Sequence[Sequence[str]],
    ranked_paths: Sequence[Sequence[Sequence[str]]] | None = None,
    train_counts: Counter | None = None,
    ks: Sequence[int] = (1, 3, 5, 10),
    head_min: int = 10,
) -> dict[str, dict]:
    """Scores per level (``lvl1`` … ``lvlN``), top-K recall at the leaf level, and the leaf
    scores split into head (``>= head_min`` training examples) and tail categories.

    Paths are raw label tuples, root first. Levels beyond a path's depth are skipped.
    """
    depth = max(len(p) for p in gold_paths)
    report: dict[str, dict] = {}
    for lvl in range(depth):
        idx = [i for i, g in enumerate(gold_paths) if len(g) > lvl]
        g = [PATH_SEP.join(gold_paths[i][: lvl + 1]) for i in idx]
        p = [PATH_SEP.join(pred_paths[i][: lvl + 1]) for i in idx]
        report[f"lvl{lvl + 1}"] = level_scores(g, p)
    leaf_gold = [PATH_SEP.join(x) for x in gold_paths]
    leaf_pred = [PATH_SEP.join(x) for x in pred_paths]
    if ranked_paths is not None:
        ranked = [[PATH_SEP.join(c) for c in r] for r in ranked_paths]
        report["leaf"] = {
            **level_scores(leaf_gold, leaf_pred),
            **topk_recall(leaf_gold, ranked, ks),
        }
    else:
        report["leaf"] = level_scores(leaf_gold, leaf_pred)
    if train_counts is not None:
        for name, keep in (
            ("head", lambda c: c >= head_min),
            ("tail", lambda c: c < head_min),
        ):
            idx = [i for i, g in enumerate(gold_paths) if keep(train_counts.get(tuple(g), 0))]
            if idx:
                report[f"leaf_{name}"] = level_scores(
                    [leaf_gold[i] for i in idx], [leaf_pred[i] for i in idx]
                )
                report[f"leaf_{name}"]["categories"] = len({leaf_gold[i] for i in idx})
    return report


# ---- relevance (binary) ---------------------------------------------------------------------
def binary_report(
    y_true: Sequence[int], prob: Sequence[float], thresholds: Sequence[float] = (0.5, 0.7)
) -> dict[str, float]:
    """ROC-AUC, accuracy at 0.5, and precision / recall at each threshold."""
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    out = {
        "roc_auc": float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan"),
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "n": int(len(y)),
    }
    for t in thresholds:
        pred = (p >= t).astype(int)
        out[f"precision@{t}"] = float(precision_score(y, pred, zero_division=0))
        out[f"recall@{t}"] = float(recall_score(y, pred, zero_division=0))
    return out


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of a Student-t confidence interval (0 for one value)."""
    from scipy import stats

    v = np.asarray([x for x in values if x == x], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), 0.0
    half = stats.t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def bootstrap_ci(
    y_true: Sequence[int],
    prob: Sequence[float],
    metric: str = "roc_auc",
    n: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and half-width of a percentile bootstrap interval over test pairs (deterministic
    systems, which have no training seed to vary)."""
    rng = np.random.default_rng(seed)
    y, p = np.asarray(y_true), np.asarray(prob)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(set(y[idx].tolist())) == 2:
            vals.append(binary_report(y[idx], p[idx], thresholds=())[metric])
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(binary_report(y, p, thresholds=())[metric]), float((hi - lo) / 2)


def paired_bootstrap_diff(
    y_true: Sequence[int],
    prob_a: Sequence[float],
    prob_b: Sequence[float],
    metric: str = "roc_auc",
    n: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on the same test pairs, with a 95% percentile interval from
    resampling the pairs once for both systems (so what they share cancels out)."""
    rng = np.random.default_rng(seed)
    y, a, b = np.asarray(y_true), np.asarray(prob_a), np.asarray(prob_b)

    def diff(idx: np.ndarray) -> float:
        ra = binary_report(y[idx], a[idx], thresholds=())[metric]
        return float(ra - binary_report(y[idx], b[idx], thresholds=())[metric])

    vals = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(set(y[idx].tolist())) == 2:
            vals.append(diff(idx))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return diff(np.arange(len(y))), float(lo), float(hi)
