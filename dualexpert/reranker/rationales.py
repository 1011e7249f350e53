"""LLM rationales for the reranker's training pairs (issue 17, lever 1).

For each product the reranker trains on, the LLM is told the product's known category and its
near-misses (the leaves the reranker is trained to reject for it) and explains why the product
belongs where it is filed: the second paper's label-conditioned rationale, on the first paper's
problem. The rationale is keyed by the positive pair's id (:func:`~.estimator.pair_id`), so
``CategoryReranker.fit(..., rationales=load_rationales(file))`` gives it to that pair's decoder
target; the near-miss pairs add no auxiliary loss.

``write_category_rationales`` appends one JSON line per product as it goes; a rerun on the same
file skips what is written (kill -9 loses at most the products in flight).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import dspy
from pydantic import BaseModel, Field

from ..adapters import BriefChatAdapter
from ..data import Product
from ..relevance.rationales import journalled
from ..signatures import ExplainCategory
from ..taxonomy import Taxonomy
from ..text import trim_to_sentence
from .estimator import CategoryReranker

DEFAULT_DEMOS = [
    dspy.Example(product=p, category=c, near_misses=n, rationale=r).with_inputs(
        "product", "category", "near_misses"
    )
    for p, c, n, r in (
        (
            "Garmin Forerunner 245 GPS Running Smartwatch with heart rate monitor",
            "Smart Watches (Wearable Technology)",
            "Fitness Trackers (Wearable Technology)\nWatches (Jewelry & Accessories)",
            "A GPS watch that runs apps and shows notifications is a smart watch, not a simple "
            "band that only counts steps or a plain wristwatch.",
        ),
        (
            "Ziploc freezer bags, gallon size, 60 count",
            "Food Storage Bags (Kitchen Storage)",
            "Trash Bags (Household Supplies)\nFood Containers (Kitchen Storage)",
            "Resealable bags for keeping food frozen are food storage bags; they are not rigid "
            "containers and not meant for rubbish.",
        ),
    )
]


class RationaleRequest(BaseModel):
    """One product to explain: its positive pair's id, its text, its category's text and the
    near-miss categories' texts (as the reranker shows them)."""

    id: str
    product: str = Field(min_length=1)
    category: str = Field(min_length=1)
    near_misses: list[str] = Field(default_factory=list)


class CategoryRationaleWriter(dspy.Module):
    """``forward(product, category, near_misses)`` → ``Prediction(rationale=...)``.

    ``max_tokens`` caps the answer; ``max_product_chars`` cuts long descriptions (the prompt,
    not the answer, dominates a small local LLM's time); ``demos`` are the few-shot examples
    (``DEFAULT_DEMOS``; ``[]`` for none), plain DSPy state that an optimiser can replace.
    Without an adapter configured in DSPy it uses
    :class:`~dualexpert.adapters.BriefChatAdapter` (the bare rationale after the demos).
    """

    def __init__(
        self,
        max_tokens: int = 64,
        max_product_chars: int = 400,
        demos: list[dspy.Example] | None = None,
    ) -> None:
        super().__init__()
        if max_product_chars < 1:
            raise ValueError(f"max_product_chars must be at least 1, got {max_product_chars}")
        self.max_tokens = max_tokens
        self.max_product_chars = max_product_chars
        self.write = dspy.Predict(ExplainCategory)
        self.write.demos = list(DEFAULT_DEMOS if demos is None else demos)

    def forward(
        self, product: str, category: str, near_misses: Sequence[str] | str = ()
    ) -> dspy.Prediction:
        misses = near_misses if isinstance(near_misses, str) else "\n".join(near_misses)
        adapter = dspy.settings.adapter or BriefChatAdapter()
        with dspy.context(adapter=adapter):
            pred = self.write(
                product=product[: self.max_product_chars],
                category=category,
                near_misses=misses or "(none)",
                config={"max_tokens": self.max_tokens},
            )
        return dspy.Prediction(rationale=trim_to_sentence(pred.rationale))


def rationale_requests(
    reranker: CategoryReranker, products: Sequence[Product], taxonomy: Taxonomy
) -> list[RationaleRequest]:
    """The products the reranker trains on (its ``training_pairs``: the ``max_products``
    hardest, in catalogue order), each with its near-misses, as rationale requests. Build them
    with the reranker's own settings, so the ids match the pairs it will train on."""
    out: list[RationaleRequest] = []
    for pr in reranker.training_pairs(products, taxonomy):
        if pr.label == 1:
            out.append(RationaleRequest(id=pr.id, product=pr.query, category=pr.title))
        elif out:
            out[-1].near_misses.append(pr.title)
    return out


def write_category_rationales(
    requests: Iterable[RationaleRequest],
    out: str | Path,
    program: CategoryRationaleWriter | None = None,
    progress: Callable[[int], None] | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Write a rationale for each request to ``out`` (JSONL: ``id``, ``category``,
    ``rationale``), resuming where it stopped. ``parallel`` as in
    :func:`~dualexpert.relevance.write_rationales`. Returns its totals."""
    program = program or CategoryRationaleWriter()

    def answer(rq: RationaleRequest) -> dict[str, Any] | None:
        rationale = program(
            product=rq.product, category=rq.category, near_misses=rq.near_misses
        ).rationale
        return {"id": rq.id, "category": rq.category, "rationale": rationale} if rationale else None

    return journalled(requests, out, answer, progress=progress, parallel=parallel)
