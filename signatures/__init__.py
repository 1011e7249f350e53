"""DSPy Signature classes (prompts only): categorisation, category summaries, relevance."""

from .categorisation import (
    RankCategories,
    SelectCategory,
    SummariseCategory,
    WriteProducts,
)
from .relevance import JudgeRelevance, WriteRationale

__all__ = [
    "JudgeRelevance",
    "RankCategories",
    "SelectCategory",
    "SummariseCategory",
    "WriteProducts",
    "WriteRationale",
]
