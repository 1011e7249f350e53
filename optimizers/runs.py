"""DSPy optimisation runs over the general expert, with the domain expert kept fixed.

The domain expert's candidates are computed once per labelled product (:func:`build_examples`):
each ``dspy.Example`` holds the product text and the candidate texts as inputs, and the candidate
ids and the gold path as labels. The program optimised is a :class:`~dualexpert.general.
GeneralExpert`; the metric maps its chosen index back to a category id and scores it with
:mod:`dualexpert.optimizers.metrics`.

:func:`optimize` runs one of DSPy's own optimisers (``bootstrap``: ``BootstrapFewShot``,
``random_search``: ``BootstrapFewShotWithRandomSearch``, ``mipro``: ``MIPROv2``, ``gepa``:
``GEPA``, ``simba``: ``SIMBA``) under a cap on LLM calls, projects the number of calls before it
starts, reports progress, scores the program before and after on a dev split the optimiser never
sees (``dspy.Evaluate``), and saves the compiled program as DSPy JSON.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy

from dualexpert.programs import save_program, strip_lms
from dualexpert.taxonomy import PATH_SEP

from .budget import Budget, BudgetExceeded, budgeted_lm
from .metrics import exact_match, feedback_metric, hierarchical_credit, reciprocal_rank

logger = logging.getLogger(__name__)

OPTIMIZERS = ("bootstrap", "random_search", "mipro", "gepa", "simba")
METRICS: dict[str, Callable] = {
    "exact": exact_match,
    "hierarchical": hierarchical_credit,
    "mrr": reciprocal_rank,
}

# Small defaults: a run on a CPU-bound local LLM should take minutes, not hours.
DEFAULTS: dict[str, dict[str, Any]] = {
    "bootstrap": {"max_bootstrapped_demos": 2, "max_labeled_demos": 0, "max_rounds": 1},
    "random_search": {
        "max_bootstrapped_demos": 2,
        "max_labeled_demos": 0,
        "max_rounds": 1,
        "num_candidate_programs": 2,
    },
    "mipro": {
        "num_candidates": 2,
        "num_trials": 3,
        "max_bootstrapped_demos": 2,
        "max_labeled_demos": 0,
        "minibatch": False,
        "view_data_batch_size": 10,
    },
    "gepa": {"max_metric_calls": None, "reflection_minibatch_size": 2, "use_merge": False},
    "simba": {"bsize": 4, "num_candidates": 2, "max_steps": 2, "max_demos": 2},
}


# -- data ---------------------------------------------------------------------------------------
def build_examples(
    domain: Any,
    products: Sequence[Any],
    k: int = 5,
    representation: str = "descriptive",
    summaries: Any = None,
    batch_size: int = 128,
) -> list[dspy.Example]:
    """One ``dspy.Example`` per labelled product, with the domain expert's candidates fixed.

    ``domain`` is anything with ``predict_topk(products, k)`` and ``taxonomy`` (a
    :class:`~dualexpert.domain.DomainExpert`). Inputs: ``product`` (text) and ``candidates``
    (texts in ``representation``, best first). Labels: ``gold`` (path), ``candidate_ids``,
    ``candidate_paths``, ``domain_probability`` (the top-1 probability) and ``product_id``.
    """
    from dualexpert.data import as_product
    from dualexpert.pipeline import DualExpert

    if representation == "examples":
        # the labelled products are in the neighbour index: each would be its own example
        raise ValueError(
            "representation 'examples' cannot be optimised on labelled products from the "
            "domain expert's own training data (each would be shown as its own example); "
            "optimise with descriptive and classify with examples"
        )
    prods = [as_product(p) for p in products]
    prods = [p for p in prods if p.category is not None]
    shower = DualExpert(domain, k=k, representation=representation, summaries=summaries)
    out: list[dspy.Example] = []
    for start in range(0, len(prods), batch_size):
        batch = prods[start : start + batch_size]
        for p, cands in zip(batch, domain.predict_topk(batch, k=k), strict=True):
            out.append(
                dspy.Example(
                    product=p.text(),
                    candidates=[shower.candidate_text(c.id) for c in cands],
                    gold=list(p.category),
                    candidate_ids=[c.id for c in cands],
                    candidate_paths=[list(c.path) for c in cands],
                    domain_probability=float(cands[0].probability),
                    product_id=p.id,
                ).with_inputs("product", "candidates")
            )
    return out


def as_category(example: Any, pred: Any) -> dspy.Prediction | None:
    """A general-expert prediction (candidate index) as a category prediction."""
    if pred is None:
        return None
    ids = list(example.candidate_ids)
    paths = list(example.get("candidate_paths") or [i.split(PATH_SEP) for i in ids])
    idx = getattr(pred, "index", None)
    if not isinstance(idx, int) or not 0 <= idx < len(ids):
        return None
    ranking = [i for i in (getattr(pred, "ranking", None) or [idx]) if 0 <= i < len(ids)]
    return dspy.Prediction(
        category=ids[idx], path=list(paths[idx]), ranking=[ids[i] for i in ranking]
    )


def candidate_metric(metric: str | Callable = "exact") -> Callable:
    """A DSPy metric over general-expert predictions, scored on the category they pick.

    ``metric`` is ``exact``, ``hierarchical``, ``mrr``, ``feedback`` (score and words, for GEPA)
    or a callable ``(example, category_prediction, trace) -> float``. The returned metric takes
    GEPA's five arguments too.
    """
    if metric == "feedback":

        def fb(example, pred, trace=None, pred_name=None, pred_trace=None):
            cat = as_category(example, pred)
            if cat is None:
                return dspy.Prediction(
                    score=0.0, feedback="The program gave no valid candidate number."
                )
            return feedback_metric(example, cat, trace)

        fb.__name__ = "feedback_metric"
        return fb
    base = METRICS[metric] if isinstance(metric, str) else metric

    def scored(example, pred, trace=None, pred_name=None, pred_trace=None):
        cat = as_category(example, pred)
        return 0.0 if cat is None else float(base(example, cat, trace))

    scored.__name__ = getattr(base, "__name__", "metric")
    return scored


def domain_scores(examples: Sequence[dspy.Example]) -> dict[str, float]:
    """Scores of the domain expert's top-1 alone on the examples (no LLM calls)."""
    preds = [dspy.Prediction(index=0, ranking=list(range(len(e.candidate_ids)))) for e in examples]
    return score_predictions(examples, preds)


def score_predictions(examples: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    """Mean exact, hierarchical and MRR scores of general-expert predictions."""
    out: dict[str, float] = {}
    for name, fn in METRICS.items():
        m = candidate_metric(fn)
        vals = [m(e, p) for e, p in zip(examples, preds, strict=True)]
        out[name] = sum(vals) / len(vals) if vals else float("nan")
    return out


def evaluate(
    program: dspy.Module, devset: Sequence[dspy.Example], num_threads: int = 1
) -> dict[str, float]:
    """Score a general expert on ``devset`` with ``dspy.Evaluate`` (all three metrics)."""
    ev = dspy.Evaluate(
        devset=list(devset),
        metric=candidate_metric("exact"),
        num_threads=num_threads,
        display_progress=False,
        max_errors=len(devset) + 1,
        failure_score=0.0,
    )
    res = ev(program)
    preds = [r[1] for r in res.results]
    return score_predictions([r[0] for r in res.results], preds)


# -- budget ---------------------------------------------------------------------------------------
def project_calls(
    optimizer: str,
    n_train: int,
    n_dev: int,
    settings: Mapping[str, Any] | None = None,
    retries: int = 1,
) -> dict[str, int]:
    """Projected LLM calls of a run: dev evaluations before and after, and the compile step.

    A *program run* is one general-expert call (one LLM call, two if its answer is invalid and
    it retries); *proposals* are the optimiser's own calls (instructions, rules, reflection).
    ``expected`` counts one call per program run, ``at_most`` counts the retries too.
    """
    s = {**DEFAULTS[optimizer], **(settings or {})}
    runs, proposals = 0, 0
    if optimizer == "bootstrap":
        runs = n_train * s["max_rounds"]
    elif optimizer == "random_search":
        n = s["num_candidate_programs"]
        runs = (n + 3) * n_train + (n + 1) * n_train * s["max_rounds"]
    elif optimizer == "mipro":
        n_val = max(1, int(n_train * 0.8))
        n_tr = max(1, n_train - n_val)
        zero_shot = s["max_bootstrapped_demos"] == 0 and s["max_labeled_demos"] == 0
        boot = 0 if zero_shot else (s["num_candidates"] + 2) * n_tr
        per_trial = min(s.get("minibatch_size", 35), n_val) if s["minibatch"] else n_val
        runs = boot + n_val + s["num_trials"] * per_trial
        if s["minibatch"]:
            runs += (s["num_trials"] // s.get("minibatch_full_eval_steps", 5) + 1) * n_val
        # dataset observations and summary; per candidate: program, module, instruction
        proposals = s["num_candidates"] * (1 + 2 * s.get("program_aware_proposer", True))
        if s.get("data_aware_proposer", True):
            proposals += math.ceil(n_tr / s["view_data_batch_size"]) + 1
    elif optimizer == "gepa":
        mb = s["reflection_minibatch_size"]
        runs = int(s["max_metric_calls"] or 0) + 2 * mb  # GEPA may finish its last iteration
        proposals = math.ceil(runs / mb)
    elif optimizer == "simba":
        b, c = min(s["bsize"], n_train), s["num_candidates"]
        runs = s["max_steps"] * (b * c + (c + 1) * b) + (c + 1) * n_train
        proposals = s["max_steps"] * (c + 1)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}: choose from {OPTIMIZERS}")
    evals = 2 * n_dev
    return {
        "evaluation": evals,
        "compile_runs": runs,
        "compile_proposals": proposals,
        "expected": evals + runs + proposals,
        # a reply the adapter cannot parse is asked again in JSON mode
        "at_most": (evals + runs + proposals) * (1 + retries),
    }


def _gepa_metric_calls(max_calls: int, n_dev: int, n_train: int, mb: int) -> int:
    """The most GEPA metric calls that fit in the budget after the dev evaluations."""
    room = max_calls - 2 * n_dev
    # each metric call is one program run; each iteration adds ~1 reflection per ``mb`` runs
    calls = int(room * mb / (mb + 1)) - 2 * mb
    if calls < n_train + mb:
        raise BudgetExceeded(
            f"max_calls={max_calls} leaves room for {max(calls, 0)} GEPA metric calls; it needs "
            f"at least {n_train + mb} (one pass over the {n_train} training examples and one "
            "minibatch)"
        )
    return calls


# -- the run --------------------------------------------------------------------------------------
@dataclass
class OptimizationResult:
    optimizer: str
    program: Any = field(repr=False)
    before: dict[str, float]
    after: dict[str, float]
    domain: dict[str, float]
    projected: dict[str, int]
    calls: int
    capped: bool
    seconds: float
    n_train: int
    n_dev: int
    settings: dict[str, Any]
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("program")
        return d


def _make(
    name: str,
    settings: dict[str, Any],
    lm: Any,
    metric: str | Callable,
    num_threads: int,
    seed: int,
):
    """The DSPy optimiser and its ``compile`` keyword arguments."""
    from dspy.teleprompt import (
        GEPA,
        SIMBA,
        BootstrapFewShot,
        BootstrapFewShotWithRandomSearch,
        MIPROv2,
    )

    m = candidate_metric(metric)
    s = dict(settings)
    if name == "bootstrap":
        return BootstrapFewShot(metric=m, **s), {}
    if name == "random_search":
        return BootstrapFewShotWithRandomSearch(metric=m, num_threads=num_threads, **s), {}
    if name == "mipro":
        compile_kw = {
            k: s.pop(k)
            for k in (
                "num_trials",
                "minibatch",
                "minibatch_size",
                "minibatch_full_eval_steps",
                "view_data_batch_size",
                "program_aware_proposer",
                "data_aware_proposer",
                "tip_aware_proposer",
                "fewshot_aware_proposer",
            )
            if k in s
        }
        opt = MIPROv2(
            metric=m,
            prompt_model=lm,
            task_model=lm,
            auto=None,
            num_threads=num_threads,
            seed=seed,
            verbose=False,
            **s,
        )
        return opt, compile_kw
    if name == "gepa":
        opt = GEPA(
            metric=candidate_metric("feedback"),
            reflection_lm=lm,
            num_threads=num_threads,
            seed=seed,
            **s,
        )
        return opt, {}
    if name == "simba":
        return SIMBA(metric=m, prompt_model=lm, num_threads=num_threads, **s), {"seed": seed}
    raise ValueError(f"unknown optimizer {name!r}: choose from {OPTIMIZERS}")


def optimize(
    trainset: Sequence[dspy.Example],
    devset: Sequence[dspy.Example],
    optimizer: str = "bootstrap",
    *,
    lm: Any = None,
    student: dspy.Module | None = None,
    strategy: str = "zero_shot",
    metric: str | Callable = "exact",
    max_calls: int = 300,
    settings: Mapping[str, Any] | None = None,
    num_threads: int = 1,
    seed: int = 0,
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> OptimizationResult:
    """Optimise a general expert on ``trainset``; score it before and after on ``devset``.

    Args:
        trainset: examples from :func:`build_examples` that the optimiser learns from.
        devset: disjoint examples for the before/after scores.
        optimizer: one of :data:`OPTIMIZERS` (bootstrap, random_search, mipro, gepa, simba).
        lm: the LM to optimise for (default ``dspy.settings.lm``).
        student: the program to optimise (default ``GeneralExpert(strategy)``).
        strategy: the prompt strategy of the default student (not ``score``).
        metric: exact, hierarchical, mrr, or a DSPy metric function.
        max_calls: cap on the LLM requests of the whole run. A run whose projection exceeds it
            is refused before it starts (``BudgetExceeded``); requests past it are refused.
        settings: override the optimiser's small defaults (:data:`DEFAULTS`).
        num_threads: parallel evaluation threads.
        seed: the optimiser's seed.
        out: where to save the compiled program (DSPy JSON), if given.
        progress: ``progress(calls, projected)`` after each LLM request.
        log: gets one line per phase (default: this module's logger, at INFO).

    Returns:
        An :class:`OptimizationResult`: the compiled program, the scores before and after and
        of the domain expert alone, the LLM calls made and the saved path.
    """
    from dualexpert.general import GeneralExpert

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: choose from {OPTIMIZERS}")
    if strategy == "score":
        raise ValueError(
            "strategy 'score' has no prompt to optimise; use zero_shot, rank or cot_rank"
        )
    trainset, devset = list(trainset), list(devset)
    if not trainset or not devset:
        raise ValueError("optimisation needs a non-empty trainset and devset")
    seen = {id(e) for e in trainset}
    if any(id(e) in seen for e in devset):
        raise ValueError("the dev split must be disjoint from the training split")
    say = log or logger.info
    lm = lm or dspy.settings.lm
    if lm is None:
        raise ValueError("no LM: pass lm=... or dspy.configure(lm=...)")
    student = student or GeneralExpert(strategy)
    retries = int(getattr(student, "retries", 1))
    s = {**DEFAULTS[optimizer], **(settings or {})}
    if optimizer == "simba":
        s["bsize"] = min(s["bsize"], len(trainset))
    if optimizer == "mipro" and len(trainset) < 2:
        raise ValueError("MIPROv2 needs at least 2 training examples (it holds 80% out)")
    if optimizer == "gepa" and not s.get("max_metric_calls"):
        s["max_metric_calls"] = _gepa_metric_calls(
            max_calls, len(devset), len(trainset), s["reflection_minibatch_size"]
        )
    projected = project_calls(optimizer, len(trainset), len(devset), s, retries)
    say(
        f"{optimizer}: {len(trainset)} train / {len(devset)} dev examples; projected LLM calls "
        f"~{projected['expected']} (at most {projected['at_most']} with retries), "
        f"budget {max_calls}"
    )
    if projected["expected"] > max_calls:
        raise BudgetExceeded(
            f"the {optimizer} run is projected to need ~{projected['expected']} LLM calls, over "
            f"max_calls={max_calls}; raise max_calls or use fewer examples or smaller settings"
        )
    budget = Budget(
        max_calls,
        progress=(lambda n: progress(n, projected["expected"])) if progress else None,
    )
    blm = budgeted_lm(lm, budget)
    t0 = time.perf_counter()
    domain = domain_scores(devset)
    with dspy.context(lm=blm):
        say(f"scoring the program before optimisation on {len(devset)} dev examples")
        before = evaluate(student, devset, num_threads)
        # keep enough calls to score the compiled program afterwards
        budget.max_calls = max(budget.calls, max_calls - len(devset))
        say(f"compiling with {optimizer}")
        opt, compile_kw = _make(optimizer, s, blm, metric, num_threads, seed)
        try:
            compiled = opt.compile(student.deepcopy(), trainset=trainset, **compile_kw)
        except Exception as e:
            if budget.refused:
                raise BudgetExceeded(
                    f"the LLM call budget ran out while compiling ({budget.calls} calls made): {e}"
                ) from e
            raise
        capped = budget.refused > 0
        budget.max_calls = max_calls
        strip_lms(compiled)
        say(f"scoring the compiled program on {len(devset)} dev examples")
        after = evaluate(compiled, devset, num_threads)
    result = OptimizationResult(
        optimizer=optimizer,
        program=compiled,
        before=before,
        after=after,
        domain=domain,
        projected=projected,
        calls=budget.calls,
        capped=capped,
        seconds=time.perf_counter() - t0,
        n_train=len(trainset),
        n_dev=len(devset),
        settings={k: v for k, v in s.items() if isinstance(v, int | float | str | bool)},
    )
    say(
        f"{optimizer}: exact {before['exact']:.3f} -> {after['exact']:.3f} on dev "
        f"(domain expert alone {domain['exact']:.3f}); {budget.calls} LLM calls"
        + (" (budget cap reached)" if capped else "")
    )
    if out is not None:
        result.path = str(
            save_program(
                compiled,
                out,
                meta={
                    "optimizer": optimizer,
                    "before": before,
                    "after": after,
                    # the student's own (a custom one may differ from the default's)
                    "strategy": getattr(compiled, "strategy", strategy),
                },
            )
        )
        say(f"saved the compiled program to {result.path}")
    return result


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["max_steps=3", "name=x"]`` → ``{"max_steps": 3, "name": "x"}`` (values read as JSON
    where they parse, else kept as text)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"setting {item!r} is not NAME=VALUE")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value
    return out
