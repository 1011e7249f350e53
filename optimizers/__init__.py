"""Metrics and DSPy optimisation runs for the general expert."""

from dualexpert.programs import load_program, save_program

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
    optimize,
    parse_settings,
    project_calls,
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
    "parse_settings",
    "project_calls",
    "reciprocal_rank",
    "save_program",
]
