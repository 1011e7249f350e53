"""dualexpert: dual-expert product categorisation and rationale-guided relevance distillation.

The public API is imported lazily so that ``import dualexpert`` stays cheap (no torch until a
model is used).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.2.0"

_EXPORTS = {
    "Taxonomy": "dualexpert.taxonomy",
    "Category": "dualexpert.taxonomy",
    "Product": "dualexpert.data",
    "ColumnMap": "dualexpert.data",
    "Catalogue": "dualexpert.data",
    "RecordError": "dualexpert.data",
    "load_catalogue": "dualexpert.data",
    "context_text": "dualexpert.data",
    "DomainExpert": "dualexpert.domain",
    "Candidate": "dualexpert.domain",
    "categorisation_report": "dualexpert.evaluation.metrics",
    "resolve_encoder": "dualexpert.models",
    "resolve_llm": "dualexpert.models",
    # DSPy modules and tools
    "DualExpert": "dualexpert.pipeline",
    "GeneralExpert": "dualexpert.general",
    "DomainRetriever": "dualexpert.retriever",
    "categoriser_tool": "dualexpert.tools",
    "general_expert_tool": "dualexpert.tools",
    "get_lm": "dualexpert.lm",
    "local_lm": "dualexpert.lm",
    "hosted_lm": "dualexpert.lm",
    "LLMUnavailable": "dualexpert.llm_process",
    "available_cpus": "dualexpert.threads",
    # optimisation runs
    "build_examples": "dualexpert.optimizers",
    "optimize": "dualexpert.optimizers",
    "load_program": "dualexpert.optimizers",
    "save_program": "dualexpert.optimizers",
    # scale-out on Ray Data (needs the extra dualexpert[ray])
    "classify_dataset": "dualexpert.scale",
    "RelevancePair": "dualexpert.relevance",
    "load_pairs": "dualexpert.relevance",
    "split_by_query": "dualexpert.relevance",
    "RationaleWriter": "dualexpert.relevance",
    "write_rationales": "dualexpert.relevance",
    "RelevanceDistiller": "dualexpert.relevance.distill",
    "RelevanceScorer": "dualexpert.relevance.scorer",
    "RelevanceJudge": "dualexpert.relevance.judge",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dualexpert' has no attribute {name!r}")
