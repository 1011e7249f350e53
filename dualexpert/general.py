"""The general expert (paper 3.2): an LLM, driven by DSPy, that picks one of the candidates.

Strategies (Figure 3): ``zero_shot`` (select one; "none" / "cannot decide" allowed), ``rank`` and
``cot_rank`` (chain of thought, then rank). Two more read a local model's log-probabilities
instead of its text: ``score`` (over the candidate numbers after the zero-shot prompt) and
``channel`` (how likely the product's words are after each candidate's name). Candidates are
shown as numbered lines; the text of each line is chosen by the caller (leaf, full path,
descriptive name, or name plus summary).

Product text is untrusted: an answer outside the candidate numbers is never accepted. The module
retries once, then falls back to the first candidate (the domain expert's top-1) and flags it.
An LLM that cannot answer at all (its process crashed or hung, the server failed) is a fallback
too, with ``decision="unavailable"`` and the reason in ``fallback_reason``; the run goes on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from .checks import whole_number
from .llm_process import llm_failure
from .signatures import RankCategories, SelectCategory

log = logging.getLogger(__name__)

STRATEGIES = {
    "zero_shot": SelectCategory,
    "rank": RankCategories,
    "cot_rank": RankCategories,  # through dspy.ChainOfThought, which adds the reasoning
    # the zero-shot prompt, read as the LLM's probabilities over the candidate numbers
    "score": SelectCategory,
    # no question asked: how likely the LLM finds the product's words after each category's
    # name (a noisy channel, log P(product | category)); SelectCategory only names the fields
    "channel": SelectCategory,
}
#: the text before the product's words in the ``channel`` strategy
CHANNEL_PROMPT = "Online shop category: {category}\nA product from this category: "
#: tokens of the product text the ``channel`` strategy scores (its title and a little more)
CHANNEL_TOKENS = 32


def format_candidates(texts: Sequence[str]) -> str:
    """Numbered, one per line, compact: ``1. Jewellery (Personal Accessories)``."""
    return "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))


def clean_ranking(raw: Any, n: int) -> list[int]:
    """Valid, unique 1-based candidate numbers from a model's ranking, in order."""
    if isinstance(raw, int | str):
        raw = [raw]
    out: list[int] = []
    for x in raw or []:
        if isinstance(x, bool):  # JSON true is not candidate 1
            continue
        try:
            v = int(str(x).strip().rstrip("."))
        except ValueError:
            continue
        if 1 <= v <= n and v not in out:
            out.append(v)
    return out


def scored_prediction(logp: Sequence[float], decision: str = "chosen") -> dspy.Prediction:
    """The general expert's prediction from log-probabilities over the candidates, best first
    (never a fallback: the answer is always one of them)."""
    order = sorted(range(len(logp)), key=lambda i: -logp[i])
    return dspy.Prediction(
        index=order[0],
        ranking=order,
        reason="",
        decision=decision,
        fallback=False,
        fallback_reason="",
        llm_logprobs=[float(x) for x in logp],
    )


def _local_engine(strategy: str, method: str) -> tuple[Any, Any]:
    """DSPy's configured LM and its engine, which must offer ``method`` (a local llama.cpp
    model's log-probabilities: a hosted chat API returns text only)."""
    lm = dspy.settings.lm
    engine = getattr(lm, "engine", None)
    if not hasattr(engine, method):
        raise ValueError(
            f"strategy {strategy!r} needs a local llama.cpp LM (dualexpert.lm.local_lm); "
            "use zero_shot, rank or cot_rank with hosted models"
        )
    return lm, engine


def _scored(lm: Any, engine: Any, logp: Sequence[float]) -> dspy.Prediction:
    """:func:`scored_prediction`, with the engine's call counted as LLM usage (the engine
    bypasses ``dspy.LM``)."""
    tracker = dspy.settings.usage_tracker
    if tracker is not None:
        tracker.add_usage(lm.model, dict(getattr(engine, "last_usage", None) or {"calls": 1}))
    return scored_prediction(logp)


class GeneralExpert(dspy.Module):
    """Choose among candidate categories for a product.

    Inputs: ``product`` (text) and ``candidates`` (the texts to show, best domain-expert guess
    first). Output ``dspy.Prediction`` fields:

    * ``index``: 0-based index of the chosen candidate (always valid);
    * ``ranking``: 0-based indices, best first (the chosen one first);
    * ``reason``: the LLM's explanation;
    * ``decision``: ``chosen``, ``none``, ``cannot_decide`` or ``invalid``;
    * ``fallback``: True when the LLM gave no valid answer and the first candidate was kept;
    * ``fallback_reason``: why (``""`` when there was no fallback).
    """

    def __init__(
        self,
        strategy: str = "zero_shot",
        retries: int = 1,
        max_failures: int = 5,
        cooldown: float = 300.0,
    ):
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: choose from {sorted(STRATEGIES)}")
        self.strategy = strategy
        self.retries = whole_number("retries", retries, minimum=0)
        whole_number("max_failures", max_failures)
        if not cooldown >= 0:
            raise ValueError(f"cooldown must be 0 or more seconds, not {cooldown!r}")
        # circuit breaker: after this many consecutive LLM failures the LLM is not called for
        # ``cooldown`` seconds (a dead server would otherwise cost every product its timeout);
        # then one trial call decides whether it stays open
        self.max_failures = max_failures
        self.cooldown = cooldown
        self.failures = 0
        self.open_reason = ""
        self._opened_at = 0.0
        module = dspy.ChainOfThought if strategy == "cot_rank" else dspy.Predict
        self.predict = module(STRATEGIES[strategy])

    def _ask(self, product: str, shown: str, attempt: int) -> dspy.Prediction | None:
        cfg = {"rollout_id": attempt, "temperature": 0.7} if attempt else {}
        # Structured output by default: a JSON schema that small local models must follow.
        adapter = dspy.settings.adapter or dspy.JSONAdapter()
        try:
            with dspy.context(adapter=adapter):
                return self.predict(product=product, candidates=shown, config=cfg)
        except AdapterParseError:  # unparseable even after DSPy's own JSON fallback
            return None

    def _score(self, product: str, shown: str, n: int) -> dspy.Prediction:
        """Log-probabilities over the candidate numbers from an engine that can score."""
        lm, engine = _local_engine("score", "score_options")
        if n > 9:
            raise ValueError("strategy 'score' supports at most 9 candidates")
        adapter = dspy.JSONAdapter()
        messages = adapter.format(
            self.predict.signature,
            demos=self.predict.demos,
            inputs={"product": product, "candidates": shown},
        )
        logp = engine.score_options(messages, '{"choice": ', [str(i) for i in range(1, n + 1)])
        return _scored(lm, engine, logp)

    def _channel(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        """Each candidate scored by the log-likelihood of the product's first words after its
        name (:data:`CHANNEL_PROMPT`), normalised over the candidates. Nothing is generated, so
        the answer is always one of the candidates, whatever the product text says."""
        lm, engine = _local_engine("channel", "loglik")
        prompts = [CHANNEL_PROMPT.format(category=c) for c in candidates]
        ll = engine.loglik(prompts, product, CHANNEL_TOKENS)
        top = max(ll)
        norm = top + math.log(sum(math.exp(x - top) for x in ll))
        return _scored(lm, engine, [x - norm for x in ll])

    async def _aask(self, product: str, shown: str, attempt: int) -> dspy.Prediction | None:
        cfg = {"rollout_id": attempt, "temperature": 0.7} if attempt else {}
        adapter = dspy.settings.adapter or dspy.JSONAdapter()
        try:
            with dspy.context(adapter=adapter):
                return await self.predict.acall(product=product, candidates=shown, config=cfg)
        except AdapterParseError:
            return None

    def _attempts(self, n: int):
        """The retry loop as a generator: yields attempt numbers, receives the LLM's predictions
        (or None), returns the final ``dspy.Prediction``. Shared by ``forward`` and ``aforward``."""
        decision, reason, ranking = "invalid", "", []
        for attempt in range(self.retries + 1):
            pred = yield attempt
            if pred is None:
                continue
            if self.strategy == "zero_shot":
                reason = str(getattr(pred, "reason", "") or "")
                choice = clean_ranking(getattr(pred, "choice", None), n)
                raw = str(getattr(pred, "choice", "")).strip()
                if choice:
                    ranking, decision = choice, "chosen"
                elif raw in ("0", "-1"):
                    decision = "none" if raw == "0" else "cannot_decide"
                    break
            else:
                reason = str(getattr(pred, "reason", "") or getattr(pred, "reasoning", "") or "")
                ranking = clean_ranking(getattr(pred, "ranking", None), n)
                if ranking:
                    decision = "chosen"
            if decision == "chosen":
                break
        fallback = decision != "chosen"
        if fallback and decision == "invalid":
            # the explanation of an answer outside the candidates is not passed on: it may be
            # text that the (untrusted) product put in the LLM's mouth
            reason = ""
        order = [r - 1 for r in ranking]
        order += [i for i in range(n) if i not in order]
        return dspy.Prediction(
            index=order[0],
            ranking=order,
            reason=reason,
            decision=decision,
            fallback=fallback,
            fallback_reason=f"no valid answer from the LLM ({decision})" if fallback else "",
        )

    @staticmethod
    def unavailable(n: int, reason: str) -> dspy.Prediction:
        """The domain expert's order kept, flagged: the LLM could not answer."""
        return dspy.Prediction(
            index=0,
            ranking=list(range(n)),
            reason="",
            decision="unavailable",
            fallback=True,
            fallback_reason=f"LLM unavailable: {reason}",
        )

    def _failed(self, exc: Exception, n: int) -> dspy.Prediction:
        reason = llm_failure(exc)
        if reason is None:
            raise exc
        self.failures += 1
        if self.failures >= self.max_failures and not self.open_reason:
            self.open_reason = (
                f"{self.failures} LLM failures in a row (last: {reason}); the LLM is not "
                f"called again for {self.cooldown:g} s"
            )
            self._opened_at = time.monotonic()
            log.error("%s", self.open_reason)
        return self.unavailable(n, reason)

    def _circuit_open(self) -> bool:
        if not self.open_reason:
            return False
        if time.monotonic() - self._opened_at < self.cooldown:
            return True
        self.open_reason = ""  # half-open: one more failure opens it again
        self.failures = self.max_failures - 1
        return False

    def forward(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        if self._circuit_open():
            return self.unavailable(len(candidates), self.open_reason)
        try:
            pred = self._forward(product, candidates)
        except Exception as e:
            return self._failed(e, len(candidates))
        self.failures = 0
        return pred

    async def aforward(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        """Async ``forward`` (``await expert.acall(product=..., candidates=...)``)."""
        if self._circuit_open():
            return self.unavailable(len(candidates), self.open_reason)
        try:
            pred = await self._aforward(product, candidates)
        except Exception as e:
            return self._failed(e, len(candidates))
        self.failures = 0
        return pred

    def _forward(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        n = len(candidates)
        if n == 0:
            raise ValueError("the general expert needs at least one candidate")
        if self.strategy == "channel":
            return self._channel(product, candidates)
        shown = format_candidates(candidates)
        if self.strategy == "score":
            return self._score(product, shown, n)
        loop = self._attempts(n)
        try:
            attempt = next(loop)
            while True:
                attempt = loop.send(self._ask(product, shown, attempt))
        except StopIteration as done:
            return done.value

    async def _aforward(self, product: str, candidates: Sequence[str]) -> dspy.Prediction:
        import asyncio

        n = len(candidates)
        if n == 0:
            raise ValueError("the general expert needs at least one candidate")
        if self.strategy == "channel":
            return await asyncio.to_thread(self._channel, product, candidates)
        shown = format_candidates(candidates)
        if self.strategy == "score":
            return await asyncio.to_thread(self._score, product, shown, n)
        loop = self._attempts(n)
        try:
            attempt = next(loop)
            while True:
                attempt = loop.send(await self._aask(product, shown, attempt))
        except StopIteration as done:
            return done.value
