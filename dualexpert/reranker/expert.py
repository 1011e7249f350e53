"""General experts that are not (only) an LLM, with :class:`GeneralExpert`'s interface.

* :class:`RerankerExpert`: the distilled cross-encoder as the general expert. It scores every
  candidate at cross-encoder speed and returns their log-probabilities, which
  :class:`~dualexpert.pipeline.DualExpert` fuses with the domain expert's.
* :class:`CascadeExpert`: a first expert (the reranker), and a last tier (an LLM) asked only
  when the first is unsure.

``forward(product, candidates)`` takes the product text and the candidates' texts (best
domain-expert guess first) and returns a ``dspy.Prediction`` with ``index``, ``ranking``,
``reason``, ``decision``, ``fallback``, ``fallback_reason`` and ``llm_logprobs`` (the expert's
log-probabilities over the candidates; the name is the LLM scorer's, which fusion reads).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import dspy
import numpy as np

from ..general import scored_prediction
from .estimator import CategoryReranker, log_softmax

log = logging.getLogger(__name__)


class RerankerExpert(dspy.Module):
    """The cross-encoder reranker as a general expert (no LLM call)."""

    def __init__(self, reranker: CategoryReranker) -> None:
        super().__init__()
        self.reranker = reranker

    @property
    def representation(self) -> str:
        """How candidates must be shown to it: the representation it was trained on."""
        return self.reranker.config.representation

    def forward(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        if not candidates:
            raise ValueError("the reranker needs at least one candidate")
        logp = log_softmax(self.reranker.score([product], [list(candidates)])[0])
        return scored_prediction(logp, decision="reranked")


class CascadeExpert(dspy.Module):
    """``first`` answers; when its top probability is below ``threshold``, ``last`` (an LLM
    general expert) is asked too, and the answer combines both (:meth:`_pick`). If the LLM
    cannot answer, the first expert's answer stands (and says why in ``fallback_reason``).
    ``tier`` in the prediction tells which answered last."""

    def __init__(self, first: Any, last: Any, threshold: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.first = first
        self.last = last
        self.threshold = threshold

    @property
    def representation(self) -> str | None:
        return getattr(self.first, "representation", None)

    def _confident(self, pred: dspy.Prediction) -> bool:
        logp = getattr(pred, "llm_logprobs", None)
        return bool(logp) and math.exp(max(logp)) >= self.threshold

    def forward(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        first = self.first(product=product, candidates=candidates)
        if self._confident(first):
            first.tier = "first"
            return first
        last = self.last(product=product, candidates=candidates)
        return self._pick(first, last)

    async def aforward(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        import asyncio

        first = await asyncio.to_thread(self.first, product=product, candidates=candidates)
        if self._confident(first):
            first.tier = "first"
            return first
        last = await self.last.acall(product=product, candidates=candidates)
        return self._pick(first, last)

    @staticmethod
    def _pick(first: dspy.Prediction, last: dspy.Prediction) -> dspy.Prediction:
        """The two tiers as a product of experts: the first's log-probabilities plus the
        LLM's (its scored log-probabilities, or minus its rank when it only ranks)."""
        if last.fallback:
            first.tier = "first"
            first.fallback_reason = f"last tier gave no answer: {last.fallback_reason}"
            return first
        mine = np.asarray(first.llm_logprobs, dtype=np.float64)
        theirs = last.get("llm_logprobs")
        if theirs is None:
            rank = {idx: r for r, idx in enumerate(last.ranking)}
            theirs = [-float(rank.get(i, len(mine))) for i in range(len(mine))]
        z = log_softmax(mine + np.asarray(theirs, dtype=np.float64))
        order = sorted(range(len(z)), key=lambda i: -z[i])
        return dspy.Prediction(
            index=order[0],
            ranking=order,
            reason=last.reason,
            decision=last.decision,
            fallback=False,
            fallback_reason="",
            llm_logprobs=[float(x) for x in z],
            tier="last",
        )
