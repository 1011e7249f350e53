"""DSPy Signature classes (prompts only): categorisation, category summaries, relevance."""

from .categorisation import (
    RankCategories,
    ReasonAndRankCategories,
    SelectCategory,
    SummariseCategory,
)

__all__ = ["RankCategories", "ReasonAndRankCategories", "SelectCategory", "SummariseCategory"]
