"""Metrics for DSPy evaluation and optimisation of the categoriser.

Each takes ``(example, prediction, trace=None)`` as DSPy expects. ``example.gold`` is the gold
path (raw labels, root first) or a ``PATH_SEP``-joined id; the prediction carries ``path`` or
``category`` (and ``ranking`` for MRR).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dspy

from dualexpert.taxonomy import PATH_SEP


def _path(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(">"))
    return tuple(value)


def _gold(example: Any) -> tuple[str, ...]:
    return _path(getattr(example, "gold", None) or example["gold"])


def _pred(pred: Any) -> tuple[str, ...]:
    return _path(getattr(pred, "path", None) or getattr(pred, "category", None))


def exact_match(example: Any, pred: Any, trace: Any = None) -> float:
    """1 if the predicted leaf (full path) is the gold one."""
    return float(_pred(pred) == _gold(example))


def hierarchical_credit(example: Any, pred: Any, trace: Any = None) -> float:
    """Shared path depth over gold depth: the right branch earns partial credit."""
    g, p = _gold(example), _pred(pred)
    shared = 0
    for a, b in zip(g, p, strict=False):
        if a != b:
            break
        shared += 1
    return shared / len(g) if g else 0.0


def reciprocal_rank(example: Any, pred: Any, trace: Any = None) -> float:
    """1/rank of the gold category in the prediction's ranking (0 if absent)."""
    g = PATH_SEP.join(_gold(example))
    ranking: Sequence[str] = getattr(pred, "ranking", None) or []
    for i, cid in enumerate(ranking, 1):
        if PATH_SEP.join(_path(cid)) == g:
            return 1.0 / i
    return 0.0


def feedback_metric(
    example: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
) -> dspy.Prediction:
    """Score plus feedback in words, for GEPA: what was chosen instead, and how they differ."""
    g, p = _gold(example), _pred(pred)
    score = hierarchical_credit(example, pred) if p != g else 1.0
    if p == g:
        text = f"Correct: the product belongs to '{PATH_SEP.join(g)}'."
    else:
        shared = 0
        for a, b in zip(g, p, strict=False):
            if a != b:
                break
            shared += 1
        where = (
            f"They share the branch '{PATH_SEP.join(g[:shared])}' and part at level {shared + 1}"
            if shared
            else "They differ already at the top level"
        )
        rank = reciprocal_rank(example, pred)
        seen = (
            f"The correct category was ranked {round(1 / rank)} among the candidates."
            if rank
            else "The correct category was not among the candidates ranked."
        )
        text = (
            f"Wrong: chose '{PATH_SEP.join(p)}' instead of '{PATH_SEP.join(g)}'. {where}: "
            f"'{g[shared] if shared < len(g) else ''}' versus "
            f"'{p[shared] if shared < len(p) else ''}'. {seen} Look for product words that "
            "separate these two categories."
        )
    return dspy.Prediction(score=score, feedback=text)
