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
from typing import Any, Protocol, TypeVar

import dspy
from dspy.utils.usage_tracker import track_usage

from ..adapters import BriefChatAdapter
from ..journal import USAGE_KEYS, Journal, add_usage, read_records, usage_totals
from ..signatures import WriteRationale
from ..text import trim_to_sentence
from .data import RelevancePair


class _Keyed(Protocol):
    id: str


T = TypeVar("T", bound=_Keyed)

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
    program = program or RationaleWriter()

    def check(pr: RelevancePair) -> None:
        if pr.label is None:
            raise ValueError(f"pair {pr.id}: field 'relevance' is needed to write a rationale")

    def answer(pr: RelevancePair) -> dict[str, Any] | None:
        rationale = program(query=pr.query, title=pr.title, label=pr.label).rationale
        row = {"id": pr.id, "query": pr.query, "title": pr.title, "label": pr.label}
        return {**row, "rationale": rationale} if rationale else None

    return journalled(pairs, out, answer, check, progress, parallel)


def journalled(
    items: Iterable[T],
    out: str | Path,
    answer: Callable[[T], dict[str, Any] | None],
    check: Callable[[T], None] | None = None,
    progress: Callable[[int], None] | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Run ``answer`` (one LLM program call) on each item not yet in ``out`` and append its
    row (a dict with the item's ``id``; None: an empty answer, counted as failed) as it arrives.

    ``check`` runs in the calling thread before an item is asked; what it raises stops the run
    (bad input the user must fix). An exception from ``answer`` is one failed item, not a
    stopped run. Returns totals: written, skipped, failed, LLM usage and seconds.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    journal = Journal(out)
    done = journal.done()
    totals: dict[str, Any] = {"written": 0, "skipped": 0, "failed": 0}
    usage = dict.fromkeys(USAGE_KEYS, 0)
    t0 = time.perf_counter()

    def ask(item: T) -> tuple[dict[str, Any] | None, str, dict[str, int]]:
        try:
            with track_usage() as tracker:
                row = answer(item)
            return row, "empty rationale", usage_totals(tracker)
        except Exception as e:  # one bad LLM answer must not stop a long run
            return None, f"{type(e).__name__}: {e}", {}

    def record(answered: tuple[dict[str, Any] | None, str, dict[str, int]]) -> None:
        row, err, used = answered
        add_usage(usage, used)
        if row:
            totals["written"] += write([row])
        else:
            totals["failed"] += 1
            totals.setdefault("last_error", err)
        if progress:
            progress(1)

    with journal.open() as write, ThreadPoolExecutor(parallel) as pool:
        running: set[Future] = set()
        try:
            for item in items:
                if item.id in done:
                    totals["skipped"] += 1
                    if progress:
                        progress(1)
                    continue
                if check:
                    check(item)
                # each thread sees this thread's DSPy context (LM, adapter)
                ctx = contextvars.copy_context()
                running.add(pool.submit(ctx.run, ask, item))
                while len(running) >= 2 * parallel:  # a bounded queue ahead of the threads
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for f in finished:
                        record(f.result())
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    record(f.result())
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
