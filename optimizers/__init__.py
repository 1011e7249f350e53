"""Metrics and DSPy optimisation runs for the general expert."""

from .metrics import exact_match, feedback_metric, hierarchical_credit, reciprocal_rank

__all__ = ["exact_match", "feedback_metric", "hierarchical_credit", "reciprocal_rank"]
