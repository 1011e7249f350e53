"""FAISS indexes: LLM-written category summaries, and the labelled products the domain expert's
nearest-neighbour expert reads.

Imported on first use, so that the domain expert can load its neighbour index without DSPy.
"""

from typing import Any

_WHERE = {
    "CategorySummariser": "summary_index",
    "SummaryIndex": "summary_index",
    "diverse_sample": "summary_index",
    "NeighbourIndex": "neighbours",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CategorySummariser", "NeighbourIndex", "SummaryIndex", "diverse_sample"]
