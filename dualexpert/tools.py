"""The categoriser and the general expert as ``dspy.Tool``s for agents (``dspy.ReAct``).

A ``dspy.Module`` is called with keyword arguments an agent cannot guess from ``__call__``; these
helpers give it a named function with typed arguments and a docstring, and a JSON-friendly result.

    agent = dspy.ReAct("request -> answer", tools=[categoriser_tool(DualExpert(domain))])
"""

from __future__ import annotations

from typing import Any

import dspy


def categoriser_tool(categoriser: Any, name: str = "categorise_product") -> dspy.Tool:
    """A tool that files one product with a :class:`~dualexpert.pipeline.DualExpert`.

    The tool takes ``title`` and optional ``description`` and returns ``category`` (the full
    path), ``routed`` (whether the LLM decided), ``why`` (its reason or the routing reason) and
    ``alternatives`` (the other candidates with their domain-expert probabilities).
    """

    def categorise_product(title: str, description: str = "") -> dict[str, Any]:
        pred = categoriser({"title": title, "description": description or ""})
        return {
            "category": pred.category,
            "routed": bool(pred.routed),
            "why": pred.reason or pred.route_reason,
            "alternatives": [
                {"category": c["id"], "probability": round(float(c["probability"]), 3)}
                for c in pred.candidates
                if c["id"] != pred.category
            ],
        }

    return dspy.Tool(
        categorise_product,
        name=name,
        desc="File a product in the shop's category taxonomy. Give the product's title and, "
        "if known, its description; returns the category path and why it was chosen.",
    )


def general_expert_tool(expert: Any, name: str = "choose_category") -> dspy.Tool:
    """A tool that asks a :class:`~dualexpert.general.GeneralExpert` to pick among categories."""

    def choose_category(product: str, candidates: list[str]) -> dict[str, Any]:
        pred = expert(product=product, candidates=list(candidates))
        return {
            "choice": candidates[pred.index],
            "ranking": [candidates[i] for i in pred.ranking],
            "why": pred.reason,
            "fallback": bool(pred.fallback),
        }

    return dspy.Tool(
        choose_category,
        name=name,
        desc="Choose which of the given candidate categories fits a product best.",
    )
