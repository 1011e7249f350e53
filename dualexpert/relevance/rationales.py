"""The rationale writer (paper 4.3): a DSPy program that explains a pair's relevance label.

``write_rationales`` runs it over a file of labelled pairs and appends one JSON line per pair
(``id``, ``query``, ``title``, ``label``, ``rationale``) as it goes. A restarted run on the same
output skips the pairs already written, so an interrupted run loses nothing and duplicates
nothing. DSPy's LM cache makes re-asking a pair free.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.usage_tracker import track_usage

from ..batch import done_ids, drop_torn_tail, usage_totals
from ..signatures import WriteRationale
from ..text import trim_to_sentence
from .data import RelevancePair

# Two short worked examples anchor the length and style (small local models otherwise restate the
# whole title); they sit in the static prompt prefix, which llama.cpp reuses between calls.
DEFAULT_DEMOS = [
    dspy.Example(
        query="noise cancelling headphones",
        title="Bose QuietComfort 35 II Wireless Headphones, Black",
        label="relevant",
        rationale="These are wireless headphones whose main feature is active noise "
        "cancellation, exactly what the query asks for.",
    ).with_inputs("query", "title", "label"),
    dspy.Example(
        query="garden hose nozzle",
        title="Rain Bird 50 ft. Drip Irrigation Tubing",
        label="not relevant",
        rationale="Drip tubing carries water to plants, but it is not a nozzle that attaches "
        "to the end of a hose to shape the spray.",
    ).with_inputs("query", "title", "label"),
]


class RationaleWriter(dspy.Module):
    """``forward(query, title, label)`` → ``Prediction(rationale=...)``.

    ``label`` is ``1``/``0``, ``True``/``False`` or ``"relevant"``/``"not relevant"``.
    ``max_tokens`` caps the answer (the paper asks for 1–2 sentences); ``demos`` are the
    few-shot examples shown before each pair (``DEFAULT_DEMOS``; ``[]`` for none). Both are
    plain DSPy state, so an optimiser can replace the demos.
    """

    def __init__(self, max_tokens: int = 64, demos: list[dspy.Example] | None = None) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.write = dspy.Predict(WriteRationale)
        self.write.demos = list(DEFAULT_DEMOS if demos is None else demos)

    def forward(self, query: str, title: str, label: Any) -> dspy.Prediction:
        if isinstance(label, str):
            text = label.strip().lower()
            if text not in ("relevant", "not relevant"):
                raise ValueError(f"label must be 'relevant' or 'not relevant', got {label!r}")
        else:
            text = "relevant" if int(label) else "not relevant"
        adapter = dspy.settings.adapter or dspy.JSONAdapter()
        with dspy.context(adapter=adapter):
            pred = self.write(
                query=query, title=title, label=text, config={"max_tokens": self.max_tokens}
            )
        return dspy.Prediction(rationale=trim_to_sentence(pred.rationale))


def write_rationales(
    pairs: Iterable[RelevancePair],
    out: str | Path,
    program: RationaleWriter | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a rationale for each labelled pair to ``out`` (JSONL), resuming where it stopped.

    Returns totals: pairs written, skipped (already done), failed, LLM calls, tokens, seconds.
    """
    program = program or RationaleWriter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(out)  # a killed run's half-written last line
    skip = done_ids(out)
    totals: dict[str, Any] = {"written": 0, "skipped": 0, "failed": 0}
    usage = {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    t0 = time.perf_counter()
    with out.open("a", encoding="utf-8") as f:
        for pr in pairs:
            if pr.id in skip:
                totals["skipped"] += 1
                if progress:
                    progress(1)
                continue
            if pr.label is None:
                raise ValueError(f"pair {pr.id}: field 'relevance' is needed to write a rationale")
            err = "empty rationale"
            try:
                with track_usage() as tracker:
                    rationale = program(query=pr.query, title=pr.title, label=pr.label).rationale
                for key, v in usage_totals(tracker).items():
                    usage[key] += v
            except Exception as e:  # one bad LLM answer must not stop a long run
                totals["failed"] += 1
                rationale = None
                err = f"{type(e).__name__}: {e}"
            if rationale:
                row = {
                    "id": pr.id,
                    "query": pr.query,
                    "title": pr.title,
                    "label": pr.label,
                    "rationale": rationale,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                totals["written"] += 1
            elif not totals.get("last_error"):
                totals["last_error"] = err
            if progress:
                progress(1)
    totals.update(usage, seconds=round(time.perf_counter() - t0, 2))
    return totals


def load_rationales(path: str | Path) -> dict[str, str]:
    """``{pair id: rationale}`` from a rationale JSONL file (torn last line ignored)."""
    out: dict[str, str] = {}
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                out[str(row["id"])] = str(row["rationale"])
            except (json.JSONDecodeError, KeyError):
                continue
    return out
