"""The FAISS index of LLM-written category summaries."""

from .summary_index import CategorySummariser, SummaryIndex, diverse_sample

__all__ = ["CategorySummariser", "SummaryIndex", "diverse_sample"]
