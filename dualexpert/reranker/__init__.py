"""The distilled general expert: a cross-encoder reranker over the domain expert's candidates
(issue 17, lever 1), usable as ``DualExpert(general=RerankerExpert(...))``, with an LLM as an
optional last tier (:class:`CascadeExpert`)."""

from .estimator import CategoryReranker, RerankerConfig, pair_id
from .expert import CascadeExpert, RerankerExpert

__all__ = ["CascadeExpert", "CategoryReranker", "RerankerConfig", "RerankerExpert", "pair_id"]
