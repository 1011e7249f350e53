"""The rationale writer (paper 4.3): a DSPy program that explains a pair's relevance label.

``write_rationales`` runs it over a file of labelled pairs and appends one JSON line per pair
(``id``, ``query``, ``title``, ``label``, ``rationale``) as it goes. A restarted run on the same
output skips the pairs already written, so an interrupted run loses nothing and duplicates
nothing. DSPy's LM cache makes re-asking a pair free. With ``parallel`` above 1 the pairs are
asked from that many threads at once: a hosted LLM serves them concurrently, and the local engine
(``local_lm(..., parallel=N)``) decodes them together in one llama.cpp batch.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.usage_tracker import track_usage

from ..adapters import BriefChatAdapter
from ..journal import USAGE_KEYS, Journal, add_usage, read_records, usage_totals
from ..signatures import WriteRationale
from ..text import trim_to_sentence
from .data import RelevancePair

# Two short worked examples anchor the length and style (small local models otherwise restate the
# whole title); they sit in the static prompt prefix, which llama.cpp reuses between calls.
DEFAULT_DEMOS = [
    dspy.Example(query=q, title=t, label=lab, rationale=r).with_inputs("query", "title", "label")
    for q, t, lab, r in (
        (
            "noise cancelling headphones",
            "Bose QuietComfort 35 II Wireless Headphones, Black",
            "relevant",
            "These are wireless headphones whose main feature is active noise cancellation, "
            "exactly what the query asks for.",
        ),
        (
            "garden hose nozzle",
            "Rain Bird 50 ft. Drip Irrigation Tubing",
            "not relevant",
            "Drip tubing carries water to plants, but it is not a nozzle that attaches to the "
            "end of a hose to shape the spray.",
        ),
    )
]


class RationaleWriter(dspy.Module):
    """``forward(query, title, label)`` → ``Prediction(rationale=...)``.

    ``label`` is ``1``/``0``, ``True``/``False`` or ``"relevant"``/``"not relevant"``.
    ``max_tokens`` caps the answer (the paper asks for 1–2 sentences); ``demos`` are the
    few-shot examples shown before each pair (``DEFAULT_DEMOS``; ``[]`` for none). Both are
    plain DSPy state, so an optimiser can replace the demos. Without an adapter configured in
    DSPy, it uses :class:`~dualexpert.adapters.BriefChatAdapter`: the demos show the format,
    and the answer is the bare rationale.
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
        adapter = dspy.settings.adapter or BriefChatAdapter()
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
    parallel: int = 1,
) -> dict[str, Any]:
    """Write a rationale for each labelled pair to ``out`` (JSONL), resuming where it stopped.

    ``parallel``: pairs asked at once, from that many threads (each answer is journalled as it
    arrives, so a kill loses at most the pairs in flight, and DSPy's cache answers those again).
    Returns totals: pairs written, skipped (already done), failed, LLM calls, tokens, seconds.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    program = program or RationaleWriter()
    journal = Journal(out)
    done = journal.done()
    totals: dict[str, Any] = {"written": 0, "skipped": 0, "failed": 0}
    usage = dict.fromkeys(USAGE_KEYS, 0)
    t0 = time.perf_counter()

    def ask(pr: RelevancePair) -> tuple[str | None, str, dict[str, int]]:
        try:
            with track_usage() as tracker:
                rationale = program(query=pr.query, title=pr.title, label=pr.label).rationale
            return rationale, "empty rationale", usage_totals(tracker)
        except Exception as e:  # one bad LLM answer must not stop a long run
            return None, f"{type(e).__name__}: {e}", {}

    def record(pr: RelevancePair, answer: tuple[str | None, str, dict[str, int]]) -> None:
        rationale, err, used = answer
        add_usage(usage, used)
        if rationale:
            row = {"id": pr.id, "query": pr.query, "title": pr.title, "label": pr.label}
            totals["written"] += write([{**row, "rationale": rationale}])
        else:
            totals["failed"] += 1
            totals.setdefault("last_error", err)
        if progress:
            progress(1)

    with journal.open() as write, ThreadPoolExecutor(parallel) as pool:
        running: dict[Future, RelevancePair] = {}
        try:
            for pr in pairs:
                if pr.id in done:
                    totals["skipped"] += 1
                    if progress:
                        progress(1)
                    continue
                if pr.label is None:
                    raise ValueError(
                        f"pair {pr.id}: field 'relevance' is needed to write a rationale"
                    )
                # each thread sees this thread's DSPy context (LM, adapter)
                ctx = contextvars.copy_context()
                running[pool.submit(ctx.run, ask, pr)] = pr
                while len(running) >= 2 * parallel:  # a bounded queue ahead of the threads
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in finished:
                        record(running.pop(f), f.result())
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    record(running.pop(f), f.result())
        finally:
            for f in running:
                f.cancel()
    totals.update(usage, seconds=round(time.perf_counter() - t0, 2))
    return totals


def load_rationales(path: str | Path) -> dict[str, str]:
    """``{pair id: rationale}`` from a rationale JSONL file (torn last line ignored)."""
    return {
        str(r["id"]): str(r["rationale"])
        for r in read_records(path)
        if "id" in r and "rationale" in r
    }
