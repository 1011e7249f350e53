"""DSPy Signature classes (prompts only): categorisation, category summaries, relevance."""

from .categorisation import (
    RankCategories,
    ReasonAndRankCategories,
    SelectCategory,
    SummariseCategory,
)
from .relevance import JudgeRelevance, WriteRationale

__all__ = [
    "JudgeRelevance",
    "RankCategories",
    "ReasonAndRankCategories",
    "SelectCategory",
    "SummariseCategory",
    "WriteRationale",
]
