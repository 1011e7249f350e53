"""DSPy Signature classes (prompts only): categorisation, category summaries, relevance."""

from .categorisation import (
    ExplainCategory,
    RankCategories,
    SelectCategory,
    SummariseCategory,
    WriteProducts,
)
from .relevance import JudgeRelevance, WriteRationale

__all__ = [
    "ExplainCategory",
    "JudgeRelevance",
    "RankCategories",
    "SelectCategory",
    "SummariseCategory",
    "WriteProducts",
    "WriteRationale",
]
