"""Metrics and DSPy optimisation runs for the general expert."""

from .budget import Budget, BudgetExceeded, budgeted_lm
from .metrics import exact_match, feedback_metric, hierarchical_credit, reciprocal_rank
from .runs import (
    DEFAULTS,
    OPTIMIZERS,
    OptimizationResult,
    build_examples,
    candidate_metric,
    domain_scores,
    evaluate,
    load_program,
    optimize,
    project_calls,
    save_program,
)

__all__ = [
    "DEFAULTS",
    "OPTIMIZERS",
    "Budget",
    "BudgetExceeded",
    "OptimizationResult",
    "budgeted_lm",
    "build_examples",
    "candidate_metric",
    "domain_scores",
    "evaluate",
    "exact_match",
    "feedback_metric",
    "hierarchical_credit",
    "load_program",
    "optimize",
    "project_calls",
    "reciprocal_rank",
    "save_program",
]
