"""Rationale-guided distillation for query–product relevance (the second paper)."""

from .data import PairColumns, RelevancePair, load_pairs, sample_pairs, split_by_query
from .rationales import RationaleWriter, load_rationales, write_rationales

__all__ = [
    "PairColumns",
    "RationaleWriter",
    "RelevancePair",
    "load_pairs",
    "load_rationales",
    "sample_pairs",
    "split_by_query",
    "write_rationales",
]
