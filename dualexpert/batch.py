"""Classify a whole catalogue: two stages over chunks, bounded concurrent LLM calls, streaming.

For each chunk of products (read lazily, so memory does not grow with the catalogue):

1. **Stage 1**: one batched domain-expert pass gives every product its top-K candidates (the
   same candidates and probabilities as ``dualexpert predict``).
2. **Stage 2**: routing; only the uncertain products go to the general expert, at most
   ``concurrency`` requests in flight (worker threads). Hosted LLMs retry 429/5xx with backoff
   inside DSPy; a local llama.cpp model serves its queue one at a time.

Records come out **in input order**. :func:`classify_iter` is the Python API (an iterator of
products in, an iterator of records out); :func:`classify_products` writes them to a JSONL file
as each chunk finishes and resumes by id: a killed run, restarted on the same output, skips what
is written and loses nothing.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.usage_tracker import track_usage

from .data import Product
from .journal import (
    USAGE_KEYS,
    Journal,
    add_usage,
    chunks,
    first_of_each_id,
    ramped_chunks,
    release_freed_memory,
    usage_totals,
)

log = logging.getLogger(__name__)
TRIM_EVERY = 64  # chunks between returning freed memory to the OS


def _record(prod: Product, pred: dspy.Prediction, usage: dict[str, int], secs: float) -> dict:
    rec = {
        "id": prod.id,
        "title": prod.title,
        "category": pred.category,
        "path": pred.path,
        "routed": pred.routed,
        "route_reason": pred.route_reason,
        "decision": pred.decision,
        "fallback": pred.fallback,
        "fallback_reason": pred.get("fallback_reason", ""),
        "reason": pred.reason,
        "ranking": pred.ranking,
        "candidates": pred.candidates,
        "llm_logprobs": pred.get("llm_logprobs"),
        "usage": usage,
        "seconds": round(secs, 4),
    }
    if prod.category is not None:
        rec["gold"] = list(prod.category)
    return rec


Job = tuple[Product, list, dict, float]  # product, candidates, routing fields, stage-1 seconds


def stage_one(program: Any, products: list[Product]) -> list[dict | Job]:
    """Stage 1 on a chunk: one batched domain-expert pass, then routing.

    Returns, in the chunk's order, the final record of each confident product and a job
    ``(product, candidates, routing fields, stage-1 seconds)`` for each routed one.
    """
    t0 = time.perf_counter()
    cands = program.candidates_batch(products)
    secs = (time.perf_counter() - t0) / max(1, len(products))
    zero = dict.fromkeys(USAGE_KEYS, 0)
    out: list[dict | Job] = []
    for prod, cs in zip(products, cands, strict=True):
        routed = program.route(cs)
        if isinstance(routed, dict):
            out.append((prod, cs, routed, secs))
        else:
            out.append(_record(prod, routed, zero, secs))
    return out


def answer(program: Any, job: Job) -> dict:
    """The general expert on one routed product, fused with the domain expert: its record."""
    prod, cands, routed, secs = job
    t0 = time.perf_counter()
    with track_usage() as tracker:
        g = program.general(**program.general_inputs(prod, cands))
    pred = program.fuse(cands, g, routed)
    return _record(prod, pred, usage_totals(tracker), secs + time.perf_counter() - t0)


def stage_two(program: Any, jobs: list[Job], concurrency: int = 1) -> list[dict]:
    """Stage 2: the general expert on every routed product, ``concurrency`` requests in flight.

    Worker threads, each running in a copy of the caller's context (so ``dspy.context``
    settings apply): DSPy's synchronous path costs less CPU per request than its async one
    (BENCHMARKS.md), and a local llama.cpp engine serialises its calls anyway.
    """
    if concurrency <= 1 or len(jobs) <= 1:
        return [answer(program, job) for job in jobs]
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(min(concurrency, len(jobs))) as pool:
        return list(pool.map(lambda job: ctx.copy().run(answer, program, job), jobs))


def _arity(fn: Callable[..., Any]) -> int:
    try:
        return len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return 1


def classified_chunks(
    program: Any, products: Iterable[Product], chunk_size: int, concurrency: int
) -> Iterator[list[dict]]:
    """The records of each chunk, in input order, with the stages of consecutive chunks
    overlapped: while the LLM answers one chunk's routed products (waiting on the network or
    the local model), the domain expert already runs over the next chunk, and its routed
    products queue for the same ``concurrency`` request slots, so no slot idles at a chunk's
    end. The first chunks are small (8 products, then doubling), so the first LLM requests go
    out after a few products' domain-expert pass. At most two chunks are in memory."""
    llm_stage = ThreadPoolExecutor(max(1, concurrency))
    try:
        pending: list[dict | Future] | None = None  # the previous chunk, answers to come
        for chunk in ramped_chunks(products, chunk_size):
            ctx = contextvars.copy_context()  # dspy.context settings reach the stage-2 threads
            items: list[dict | Future] = [
                llm_stage.submit(ctx.copy().run, answer, program, x) if isinstance(x, tuple) else x
                for x in stage_one(program, chunk)
            ]
            if pending is not None:
                yield _collect(pending)
            pending = items
        if pending is not None:
            yield _collect(pending)
    finally:  # on an error or Ctrl-C the queued requests are dropped, not waited for
        llm_stage.shutdown(wait=True, cancel_futures=True)


def _collect(items: list[dict | Future]) -> list[dict]:
    return [x.result() if isinstance(x, Future) else x for x in items]


def classify_iter(
    program: Any,
    products: Iterable[Product],
    chunk_size: int = 64,
    concurrency: int = 1,
    skip: Container[str] | None = None,
) -> Iterator[dict]:
    """Classify a stream of products; yields one record per product, in input order.

    Args:
        program: a :class:`dualexpert.pipeline.DualExpert`.
        products: any iterable of products (read lazily, a chunk at a time).
        chunk_size: products per batched domain-expert pass.
        concurrency: LLM requests in flight at once.
        skip: ids to leave out (already done).

    Returns:
        An iterator of JSON-ready records (``id``, ``category``, ``path``, ``routed``,
        ``decision``, ``fallback``, ``fallback_reason``, ``candidates``, ``usage``, ...).
    """

    def todo() -> Iterator[Product]:  # a repeated id is classified once
        for block in first_of_each_id(products, lambda p: p.id):
            yield from (p for p in block if skip is None or p.id not in skip)

    for records in classified_chunks(program, todo(), chunk_size, concurrency):
        yield from records


def _lm_cost(lm: Any, start: int) -> float:
    """What LiteLLM priced the calls since history entry ``start`` at (0 where unknown)."""
    history = getattr(lm, "history", None) or []
    return float(sum(h.get("cost") or 0.0 for h in history[start:]))


def classify_products(
    program: Any,
    products: Iterable[Product],
    out: str | Path,
    progress: Callable[[int, dict[str, Any]], None] | Callable[[int], None] | None = None,
    chunk_size: int = 64,
    concurrency: int = 1,
) -> dict[str, Any]:
    """Classify ``products`` into a JSONL file, one record per product, in input order.

    Products whose id is already in ``out`` are skipped, so a killed run resumes where it
    stopped without duplicates. Each chunk is written and flushed as it finishes.

    Args:
        program: a :class:`dualexpert.pipeline.DualExpert`.
        products: any iterable of products (streamed).
        out: the JSONL output, appended to.
        progress: called after each chunk with the number of new records (and, if it takes
            two arguments, the running totals).
        chunk_size: products per batched domain-expert pass.
        concurrency: LLM requests in flight at once.

    Returns:
        Totals: ``products`` (written now), ``already_done``, ``duplicate_ids``, ``routed``,
        ``fallback`` and ``fallback_reasons``, ``llm_calls``, ``prompt_tokens``,
        ``completion_tokens``, ``cost`` (USD where LiteLLM knows the price), ``seconds`` and
        ``products_per_second``.
    """
    journal = Journal(out, fields=("routed",))
    totals: dict[str, Any] = {
        "products": 0,
        "already_done": 0,
        "duplicate_ids": 0,
        "routed": 0,
        "fallback": 0,
        "fallback_reasons": {},
        **dict.fromkeys(USAGE_KEYS, 0),
        "cost": 0.0,
        "seconds": 0.0,
    }
    lm = dspy.settings.lm
    hist0 = len(getattr(lm, "history", None) or [])
    two_args = progress is not None and _arity(progress) >= 2

    t0 = time.perf_counter()
    with journal.open() as write:
        for i, recs in enumerate(
            classified_chunks(program, journal.new(products), chunk_size, concurrency), 1
        ):
            write(recs)
            if i % TRIM_EVERY == 0:
                release_freed_memory()  # keep the resident size flat over long runs
            for r in recs:
                totals["products"] += 1
                totals["routed"] += int(r["routed"])
                if r["fallback"]:
                    totals["fallback"] += 1
                    why = str(r.get("fallback_reason") or "unknown")[:160]
                    totals["fallback_reasons"][why] = totals["fallback_reasons"].get(why, 0) + 1
                add_usage(totals, r["usage"])
            totals["seconds"] = time.perf_counter() - t0
            totals["cost"] = _lm_cost(lm, hist0)
            totals["already_done"], totals["duplicate_ids"] = (
                journal.already_done,
                journal.duplicate_ids,
            )
            if progress is not None and recs:
                if two_args:
                    progress(len(recs), totals)  # type: ignore[call-arg]
                else:
                    progress(len(recs))  # type: ignore[call-arg]
    totals.update(already_done=journal.already_done, duplicate_ids=journal.duplicate_ids)
    totals["seconds"] = round(time.perf_counter() - t0, 3)
    totals["products_per_second"] = round(totals["products"] / max(totals["seconds"], 1e-9), 2)
    return totals


def predict_products(
    expert: Any,
    products: Iterable[Product],
    out: str | Path,
    k: int = 10,
    chunk_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The domain expert's top-``k`` for each product, appended to a JSONL file chunk by chunk
    (streamed; resumable by id like :func:`classify_products`).

    Returns:
        ``products`` (written now), ``already_done``, ``duplicate_ids`` and ``seconds``.
    """
    journal = Journal(out, fields=("candidates",))
    totals: dict[str, Any] = {"products": 0}
    t0 = time.perf_counter()
    with journal.open() as write:
        for todo in chunks(journal.new(products), chunk_size):
            recs = []
            for p, cands in zip(todo, expert.predict_topk(todo, k=k), strict=True):
                rec = {
                    "id": p.id,
                    "title": p.title,
                    "category": cands[0].id,
                    "candidates": [
                        {"id": c.id, "path": list(c.path), "probability": round(c.probability, 6)}
                        for c in cands
                    ],
                }
                recs.append(rec)
            totals["products"] += write(recs)
            if progress is not None:
                progress(len(todo))
    totals.update(already_done=journal.already_done, duplicate_ids=journal.duplicate_ids)
    totals["seconds"] = round(time.perf_counter() - t0, 3)
    return totals
