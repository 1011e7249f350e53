"""The LLM judging relevance directly (paper 4.1): the baseline that distillation replaces.

``RelevanceJudge(mode="generate")`` works with any LM: the answer is ``yes``/``no`` (the output
type is a Literal, so nothing else is accepted) and the probability is 1 or 0.
``mode="score"`` reads the local llama.cpp model's log-probabilities of ``yes`` and ``no`` as
the first answer token, which gives a graded probability (needed for ROC-AUC).
Few-shot: pass labelled pairs as ``demos``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..signatures import JudgeRelevance
from .data import RelevancePair


def balanced_demos(pairs: Sequence[RelevancePair], k: int = 4) -> list[dspy.Example]:
    """``k`` labelled demos, alternating relevant and not relevant, in the given order."""
    pos = [p for p in pairs if p.label == 1]
    neg = [p for p in pairs if p.label == 0]
    picked: list[RelevancePair] = []
    for i in range(k):
        src = pos if i % 2 == 0 else neg
        if src:
            picked.append(src.pop(0))
    return [
        dspy.Example(query=p.query, title=p.title, relevant="yes" if p.label else "no").with_inputs(
            "query", "title"
        )
        for p in picked
    ]


class RelevanceJudge(dspy.Module):
    """``forward(query, title)`` → ``Prediction(relevant: bool, probability: float)``."""

    def __init__(self, mode: str = "generate", demos: Sequence[dspy.Example] = ()) -> None:
        super().__init__()
        if mode not in ("generate", "score"):
            raise ValueError(f"mode must be 'generate' or 'score', not {mode!r}")
        self.mode = mode
        self.judge = dspy.Predict(JudgeRelevance)
        self.judge.demos = list(demos)

    def _score(self, query: str, title: str) -> float:
        engine = getattr(dspy.settings.lm, "engine", None)
        if not hasattr(engine, "score_options"):
            raise ValueError("mode 'score' needs a local llama.cpp LM (dualexpert.lm.local_lm)")
        messages = dspy.JSONAdapter().format(
            self.judge.signature, demos=self.judge.demos, inputs={"query": query, "title": title}
        )
        lp_yes, _ = engine.score_options(messages, '{"relevant": "', ["yes", "no"])
        return math.exp(lp_yes)

    def forward(self, query: str, title: str) -> dspy.Prediction:
        if self.mode == "score":
            p = self._score(query, title)
            return dspy.Prediction(relevant=p >= 0.5, probability=p)
        adapter = dspy.settings.adapter or dspy.JSONAdapter()
        try:
            with dspy.context(adapter=adapter):
                ans = self.judge(query=query, title=title).relevant
        except AdapterParseError as e:
            ans = _yes_or_no(e.lm_response)  # "Yes" or "NO" fail the literal type, not us
            if ans is None:
                return dspy.Prediction(relevant=False, probability=0.5, fallback=True)
        yes = str(ans).strip().lower() == "yes"
        return dspy.Prediction(relevant=yes, probability=1.0 if yes else 0.0, fallback=False)


def _yes_or_no(response: str | None) -> str | None:
    """``yes`` or ``no`` from a JSON answer whose ``relevant`` is that word in any case; None
    for anything else (which stays a fallback)."""
    try:
        raw = json.loads(response or "")
    except (TypeError, ValueError):
        return None
    word = raw.get("relevant") if isinstance(raw, dict) else None
    word = word.strip().lower() if isinstance(word, str) else None
    return word if word in ("yes", "no") else None
