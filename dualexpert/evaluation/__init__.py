"""Evaluation: metrics, the domain expert's report, dual-expert runs, routing, baselines.

- :mod:`.metrics`: per-level P/R/F1, top-K recall, head/tail, ROC-AUC, intervals.
- :mod:`.domain`: evaluate a domain expert (or any top-K ranker) on a labelled catalogue.
- :mod:`.dual`: score a dual-expert run journal against the domain expert alone.
- :mod:`.routing`: the threshold and fusion-weight curves chosen on a dev run.
- :mod:`.baselines`: TF-IDF + linear, k-NN embeddings, lexical and bi-encoder relevance.
"""

from .domain import evaluate_domain_expert
from .dual import labelled_records, summarise_records
from .metrics import binary_report, bootstrap_ci, categorisation_report, level_scores, mean_ci

__all__ = [
    "binary_report",
    "bootstrap_ci",
    "categorisation_report",
    "evaluate_domain_expert",
    "labelled_records",
    "level_scores",
    "mean_ci",
    "summarise_records",
]
