"""Temperature calibration of an expert's scores: the ``T`` that makes ``softmax(T * score)`` a
calibrated distribution, fitted on scores of labelled products the expert did not see (out of
fold, or leave-one-out), so that fusing experts needs no weight tuned on test data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fit_temperature(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], upper: float = 100.0
) -> tuple[float, float]:
    """``(T, mean log loss)`` for the ``T`` in ``[0.05, upper]`` with the least log loss of
    ``softmax(T * scores)`` over ``pairs`` of ``(scores (n, classes), target columns (n,))``
    (the pairs may have different classes, e.g. one per fold)."""
    from scipy.optimize import minimize_scalar

    def nll(t: float) -> float:
        total, n = 0.0, 0
        for scores, target in pairs:
            z = t * scores
            z = z - z.max(axis=1, keepdims=True)
            lp = z[np.arange(len(target)), target] - np.log(np.exp(z).sum(axis=1))
            total, n = total - float(lp.sum()), n + len(target)
        return total / max(n, 1)

    best = minimize_scalar(nll, bounds=(0.05, upper), method="bounded")
    return float(best.x), float(best.fun)
