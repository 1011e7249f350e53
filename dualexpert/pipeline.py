"""DualExpert: the domain expert's top-K, threshold routing, the general expert, and fusion.

Data flows one way: product → domain expert (top-K + probabilities) → router (confident? done)
→ general expert (LLM over the candidates, shown in the chosen representation) → fusion.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dspy

from .checks import whole_number
from .data import Product, as_product
from .general import GeneralExpert
from .retriever import DomainRetriever

REPRESENTATIONS = ("leaf", "path", "descriptive", "summary", "examples")
#: with ``examples``, the training products shown under each candidate's name ...
EXAMPLES_PER_CANDIDATE = 2
#: ... each by the first this many words of its title
EXAMPLE_WORDS = 12
#: products whose domain top-1 probability is below this go to the general expert
DEFAULT_THRESHOLD = 0.9
# ... but below this with the ``channel`` strategy: between 0.8 and 0.9 the channel fixed 1 and
# broke 9 of MWPD's routed validation products over three training seeds (BENCHMARKS, issue 17,
# session 35); the products there are mostly right already.
CHANNEL_THRESHOLD = 0.8
log = logging.getLogger(__name__)


def resolve_threshold(threshold: float | None, general: Any) -> float:
    """The routing threshold: ``threshold`` when given, else :data:`CHANNEL_THRESHOLD` for a
    general expert with the ``channel`` strategy and :data:`DEFAULT_THRESHOLD` for any other."""
    if threshold is not None:
        return float(threshold)
    channel = getattr(general, "strategy", None) == "channel"
    return CHANNEL_THRESHOLD if channel else DEFAULT_THRESHOLD


def candidate_text(
    taxonomy: Any, category_id: str, representation: str, summaries: Any = None
) -> str:
    """How a candidate is shown to the general expert: ``taxonomy.represent`` for leaf, path and
    descriptive; with ``summary``, the descriptive name followed by the category's summary
    (``summaries``: a SummaryIndex or a dict) when there is one. With ``examples`` this is the
    descriptive name; :func:`with_examples` adds the products, which depend on the product."""
    if representation == "examples":
        return taxonomy.represent(category_id, "descriptive")
    if representation != "summary":
        return taxonomy.represent(category_id, representation)
    summary = summaries.get(category_id) if summaries is not None else None
    name = taxonomy.descriptive_name(category_id)
    return f"{name}: {summary}" if summary else name


REPRESENTATION_AUTO = "auto"


def auto_representation(domain: Any, strategy: str) -> str:
    """What ``"auto"`` means for an LLM general expert: ``examples`` for the ``channel``
    strategy when the domain expert's neighbour index keeps product titles (on the routed
    products of MWPD and BigBasket, three training seeds each, it fixed more and broke fewer
    than names alone, and gained over the domain tier on every seed: BENCHMARKS, issue 17,
    session 39); ``descriptive`` otherwise."""
    index = getattr(domain, "neighbours_", None)
    if strategy == "channel" and index is not None and index.has_titles:
        return "examples"
    return "descriptive"


def with_examples(name: str, examples: list[str], words: int = EXAMPLE_WORDS) -> str:
    """A candidate's name followed by some of its labelled products (the first ``words`` words
    of each title), one a line. The ``channel`` strategy then scores the product's words after
    them, so the LLM compares the product with real members of each category."""
    lines = "".join(f"\n- {' '.join(e.split()[:words])}" for e in examples)
    return f"{name}\nSome products from this category:{lines}" if examples else name


class DualExpert(dspy.Module):
    """Dual-expert categoriser, usable as a plain ``dspy.Module``.

    ``forward(product)`` returns a ``dspy.Prediction`` with:

    * ``category`` (leaf id) and ``path`` (raw labels, root first);
    * ``candidates``: ``[{"id", "path", "probability"}]`` from the domain expert;
    * ``ranking`` (candidate ids, the LLM's order) and ``reason`` (its explanation);
    * ``routed`` (whether the LLM was asked) and ``route_reason``;
    * ``fallback`` (the LLM gave no valid answer, or could not answer at all; the domain
      expert's top-1 was kept) and ``fallback_reason``.

    ``threshold``: products whose top-1 probability is at least this skip the LLM (default
    0.8 with the ``channel`` strategy, 0.9 otherwise: :func:`resolve_threshold`).
    ``fusion_weight``: ``None`` takes the LLM's pick as is (the paper). A number ``w`` fuses the
    two experts: each candidate scores ``log p_domain + w * s_LLM``, where ``s_LLM`` is the LLM's
    log-probability of the candidate's number (strategy ``score``, local models) or minus its
    rank (any LM). The LLM then overrides the domain expert only where their confidence gap is
    small; tune ``w`` on dev data (``dualexpert threshold``).
    ``representation="examples"`` shows each candidate by its descriptive name and the
    ``examples`` labelled products of that category nearest to the product (from the domain
    expert's neighbour index, which keeps their titles).
    """

    def __init__(
        self,
        domain: Any,
        general: GeneralExpert | None = None,
        k: int = 5,
        threshold: float | None = None,
        representation: str = "descriptive",
        summaries: Mapping[str, str] | Any | None = None,
        fusion_weight: float | None = None,
        examples: int = EXAMPLES_PER_CANDIDATE,
    ) -> None:
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}")
        if representation == "summary" and summaries is None:
            raise ValueError("representation='summary' needs summaries (a SummaryIndex or a dict)")
        if representation == "examples":
            index = getattr(domain, "neighbours_", None)
            if index is None or not index.has_titles:
                why = "has no neighbour index" if index is None else "kept no product titles"
                raise ValueError(
                    f"representation='examples' needs the domain expert's neighbour index with "
                    f"product titles, and this model {why}: rebuild it with "
                    "DomainExpert.fit_neighbours(labelled products), or choose another "
                    "representation"
                )
        self.examples = whole_number("examples", examples, minimum=0)
        self.retriever = DomainRetriever(domain, k=k)
        self.general = general or GeneralExpert()
        self.threshold = resolve_threshold(threshold, self.general)
        self.representation = representation
        self.summaries = summaries
        self.fusion_weight = fusion_weight

    @property
    def taxonomy(self):
        return self.retriever.domain.taxonomy

    def candidate_text(self, category_id: str) -> str:
        return candidate_text(self.taxonomy, category_id, self.representation, self.summaries)

    def candidates_batch(self, products: list[Product]) -> list[list[Any]]:
        """Stage 1 over many products at once: the domain expert's top-K for each (the same
        candidates and probabilities as ``forward``, batched)."""
        return self.retriever.batch_candidates(products)

    def general_inputs(self, product: Product, cands) -> dict[str, Any]:
        """The general expert's inputs for a routed product."""
        text = product.text()
        shown = [self.candidate_text(c.id) for c in cands]
        if self.representation == "examples":
            near = self.retriever.domain.neighbours_.examples(
                text, [c.id for c in cands], self.examples
            )
            shown = [with_examples(s, e) for s, e in zip(shown, near, strict=True)]
        return {"product": text, "candidates": shown}

    def forward(self, product: Product | str | Mapping) -> dspy.Prediction:
        prod = as_product(dict(product) if isinstance(product, Mapping) else product)
        cands = self.retriever(prod).candidates
        routed = self.route(cands)
        if not isinstance(routed, dict):
            return routed
        g = self.general(**self.general_inputs(prod, cands))
        return self.fuse(cands, g, routed)

    async def aforward(self, product: Product | str | Mapping) -> dspy.Prediction:
        """Async ``forward`` (``await categoriser.acall(product)``): the LLM call is awaited."""
        import asyncio

        prod = as_product(dict(product) if isinstance(product, Mapping) else product)
        cands = (await asyncio.to_thread(self.retriever, prod)).candidates
        routed = self.route(cands)
        if not isinstance(routed, dict):
            return routed
        g = await self.general.acall(**self.general_inputs(prod, cands))
        return self.fuse(cands, g, routed)

    def route(self, cands) -> dict | dspy.Prediction:
        """The domain expert's answer if it is confident, else the shared output fields."""
        top = cands[0]
        out = {
            "candidates": [
                {"id": c.id, "path": list(c.path), "probability": c.probability} for c in cands
            ],
            "ranking": [c.id for c in cands],
            "reason": "",
            "fallback": False,
            "fallback_reason": "",
            "llm_logprobs": None,
        }
        if top.probability >= self.threshold or len(cands) == 1:
            why = (
                f"domain expert confident: p={top.probability:.3f} >= {self.threshold}"
                if len(cands) > 1
                else "a single candidate"
            )
            return dspy.Prediction(
                category=top.id,
                path=list(top.path),
                routed=False,
                route_reason=why,
                decision="domain",
                **out,
            )
        return out

    def fuse(self, cands, g, out: dict) -> dspy.Prediction:
        """The final prediction from the general expert's answer ``g`` on a routed product."""
        top = cands[0]
        order = list(g.ranking)
        chosen = g.index
        llm_logp = getattr(g, "llm_logprobs", None)
        if self.fusion_weight is not None and not g.fallback:
            if llm_logp is not None:  # score strategy: fuse probabilities
                llm_score = [float(x) for x in llm_logp]
            else:  # any LM: fuse the LLM's ranking
                rank = {idx: r for r, idx in enumerate(order)}
                llm_score = [-float(rank[i]) for i in range(len(cands))]
            scores = [
                math.log(max(c.probability, 1e-12)) + self.fusion_weight * llm_score[i]
                for i, c in enumerate(cands)
            ]
            chosen = max(range(len(cands)), key=lambda i: scores[i])
        pick = cands[chosen]
        out.update(
            ranking=[cands[i].id for i in order],
            reason=g.reason,
            fallback=g.fallback,
            fallback_reason=str(g.get("fallback_reason") or ""),
            llm_logprobs=llm_logp,
        )
        return dspy.Prediction(
            category=pick.id,
            path=list(pick.path),
            routed=True,
            route_reason=f"domain expert unsure: p={top.probability:.3f} < {self.threshold}",
            decision=g.decision,
            **out,
        )


GENERALS = ("auto", "reranker", "llm")
RERANKER = "reranker"  # the subfolder of a saved domain expert that holds its reranker
RERANKER_FUSION_WEIGHT = 1.0  # the reranker's log-probabilities fused as an equal expert
# The bundled local LLM's answer counts as a rank fused at this weight, not as the pick: taken as
# is it broke more products than it fixed in every MWPD measurement (BENCHMARKS: Table 4,
# sessions 15 and 17), and at 0.25 it only moves the domain expert's close calls.
LOCAL_LLM_FUSION_WEIGHT = 0.25
# The channel strategy's log-probabilities (the local LLM's likelihood of the product's words
# under each candidate) fused at this weight: on MWPD's routed products it gained 10 products on
# one training seed and tied on another (BENCHMARKS, issue 17, session 34), where the local
# model's answers at LOCAL_LLM_FUSION_WEIGHT tied.
CHANNEL_FUSION_WEIGHT = 0.3
STRATEGY_AUTO = "auto"


def auto_strategy(local: bool) -> str:
    """What ``"auto"`` means: ``channel`` with the bundled local LLM (``local``), whose
    likelihoods paid on MWPD where its answers did not; ``zero_shot`` (the paper's) with any
    other LLM, whose text is all a chat API returns."""
    return "channel" if local else "zero_shot"


def resolve_strategy(strategy: str, lm: Any = None) -> str:
    """The general expert's strategy for ``strategy``: ``"auto"`` is :func:`auto_strategy` for
    ``lm`` (default DSPy's configured one)."""
    if strategy != STRATEGY_AUTO:
        return strategy
    from .lm import is_local_lm

    return auto_strategy(is_local_lm(lm if lm is not None else dspy.settings.lm))


def resolve_fusion_weight(
    value: float | str | None, reranker: bool, lm: Any = None, strategy: str | None = None
) -> float | None:
    """The :class:`DualExpert` ``fusion_weight`` for ``value``.

    ``"auto"``: ``RERANKER_FUSION_WEIGHT`` with the reranker; with the bundled local LLM
    (``lm``, default DSPy's configured one) ``CHANNEL_FUSION_WEIGHT`` for the ``channel``
    strategy and ``LOCAL_LLM_FUSION_WEIGHT`` for the others; the LLM's pick as is with any other
    (hosted) LLM, as in the paper. ``None``: the reranker's weight with the reranker, else the
    pick as is. ``"none"``/``"pick"``: the pick as is. A number (or its text): that weight.
    """
    if isinstance(value, str):
        if value == "auto":
            if reranker:
                return RERANKER_FUSION_WEIGHT
            from .lm import is_local_lm

            if not is_local_lm(lm if lm is not None else dspy.settings.lm):
                return None
            return CHANNEL_FUSION_WEIGHT if strategy == "channel" else LOCAL_LLM_FUSION_WEIGHT
        if value.lower() in ("none", "pick"):
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"fusion weight must be auto, none or a number, not {value!r}"
            ) from None
    if value is None and reranker:
        return RERANKER_FUSION_WEIGHT
    return value


def load_dual_expert(
    model: str | Path,
    strategy: str = "auto",
    representation: str = REPRESENTATION_AUTO,
    k: int = 5,
    threshold: float | None = None,
    summaries: str | Path | None = None,
    fusion_weight: float | str | None = "auto",
    program: str | Path | None = None,
    general: str = "auto",
    llm_tier: float = 0.0,
    prior_adjustment: float | None = None,
    runtime: str = "auto",
) -> DualExpert:
    """A :class:`DualExpert` over a saved domain expert folder, as the CLI builds it.

    Args:
        model: a saved :class:`~dualexpert.domain.DomainExpert` folder.
        strategy: the LLM's strategy (see :class:`GeneralExpert`); ``"auto"``: ``channel``
            with the bundled local LLM, ``zero_shot`` with a hosted one (:func:`resolve_strategy`).
        representation: how candidates are shown: leaf, path, descriptive, summary or
            examples; ``"auto"``: the reranker's own with a reranker, else
            :func:`auto_representation`.
        k: candidates from the domain expert.
        threshold: products at least this confident skip the general expert (default: 0.8
            with the ``channel`` strategy, else 0.9; :func:`resolve_threshold`).
        summaries: a saved summary index folder (needed for ``representation="summary"``).
        fusion_weight: see :class:`DualExpert` and :func:`resolve_fusion_weight` (``"auto"``:
            1 with the reranker; with the bundled local LLM 0.3 for ``channel``, 0.25 for the
            others; the pick as is with a hosted one).
        program: a compiled LLM general expert (DSPy JSON from ``dualexpert optimize``); the
            strategy it was compiled for is read from it.
        general: ``"auto"``: the model's cross-encoder reranker (``MODEL/reranker``, trained
            by ``dualexpert train --reranker``) when it has one and the representation is the
            one it was trained on, else the LLM; ``"reranker"``: the reranker (an error
            without one); ``"llm"``: the LLM (the paper's general expert).
        llm_tier: with the reranker, products whose reranked top probability is below this
            also go to the LLM, as a last tier (0: the LLM is never called).
        prior_adjustment: the domain expert's ``tau`` instead of the one it was saved with
            (see :meth:`~dualexpert.domain.DomainExpert.load`).
        runtime: where the domain expert's encoder runs: ``"auto"``, ``"torch"`` or
            ``"onnx"`` (see :meth:`~dualexpert.domain.DomainExpert.load`).
    """
    from .domain import DomainExpert
    from .indexes import SummaryIndex

    if general not in GENERALS:
        raise ValueError(f"general must be one of {GENERALS}, not {general!r}")
    if program:
        from .programs import load_program, saved_strategy

        recorded = saved_strategy(program)
        if recorded and strategy not in (recorded, STRATEGY_AUTO):
            log.warning("%s was compiled for strategy %r: using it, not %r", program, recorded,
                        strategy)  # fmt: skip
        # a compiled program is a prompt: "auto" without a record is the paper's zero_shot
        strategy = recorded or (strategy if strategy != STRATEGY_AUTO else "zero_shot")
        llm: Any = load_program(program, strategy=strategy)
    else:
        strategy = resolve_strategy(strategy)
        llm = GeneralExpert(strategy)
    expert: Any = llm
    reranker = _reranker(Path(model), general, representation)
    domain = DomainExpert.load(model, prior_adjustment=prior_adjustment, runtime=runtime)
    if representation == REPRESENTATION_AUTO:
        representation = (
            reranker.config.representation
            if reranker is not None
            else auto_representation(domain, strategy)
        )
    if reranker is not None:
        from .reranker import CascadeExpert, RerankerExpert

        expert = RerankerExpert(reranker)
        if llm_tier > 0:
            expert = CascadeExpert(expert, llm, threshold=llm_tier)
    return DualExpert(
        domain,
        expert,
        k=k,
        threshold=threshold,
        representation=representation,
        summaries=SummaryIndex.load(summaries) if summaries else None,
        fusion_weight=resolve_fusion_weight(fusion_weight, reranker is not None, strategy=strategy),
    )


def _reranker(model: Path, general: str, representation: str) -> Any:
    """The model's reranker when ``general`` asks for it (and can have it), else None."""
    folder = model / RERANKER
    if general == "llm" or (general == "auto" and not folder.is_dir()):
        return None
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is missing: this model has no reranker (train one with "
            "`dualexpert train`, or use --general llm)"
        )
    from .reranker import CategoryReranker

    reranker = CategoryReranker.load(folder)
    if representation not in (reranker.config.representation, REPRESENTATION_AUTO):
        if general == "reranker":
            raise ValueError(
                f"the reranker was trained on {reranker.config.representation!r} candidates, "
                f"not {representation!r}; use --representation "
                f"{reranker.config.representation} or --general llm"
            )
        log.info("representation %r: the LLM is the general expert", representation)
        return None
    return reranker
