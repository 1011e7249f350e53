"""The domain expert as a DSPy retriever: candidate categories with their scores.

The domain expert itself knows nothing of DSPy; this thin adapter lets other DSPy programs ask
it for candidates (``passages`` are the candidates' full paths).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import dspy

from .checks import whole_number
from .data import Product, as_product

# Hugging Face fast tokenizers are not safe to call from several threads at once ("Already
# borrowed"): domain-expert inference is serialised; it is fast next to an LLM call.
_PREDICT_LOCK = threading.Lock()


class DomainRetriever(dspy.Module):
    """``forward(query, k=None)`` → ``Prediction(passages, candidates, scores)``."""

    def __init__(self, domain: Any, k: int = 5, representation: str = "path"):
        super().__init__()
        self.domain = domain
        self.k = whole_number("k", k)
        self.representation = representation

    def batch_candidates(self, products: list[Product], k: int | None = None) -> list[list[Any]]:
        """Candidates for many products in one batched pass of the domain expert."""
        if not products:
            return []
        k = self.k if k is None else whole_number("k", k)
        with _PREDICT_LOCK:
            return self.domain.predict_topk(products, k=k)

    def forward(self, query: Product | str | Mapping, k: int | None = None) -> dspy.Prediction:
        query = as_product(dict(query) if isinstance(query, Mapping) else query)
        k = self.k if k is None else whole_number("k", k)
        with _PREDICT_LOCK:
            cands = self.domain.predict_topk([query], k=k)[0]
        tax = self.domain.taxonomy
        return dspy.Prediction(
            passages=[tax.represent(c.id, self.representation) for c in cands],
            candidates=cands,
            scores=[c.probability for c in cands],
        )
