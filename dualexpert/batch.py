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
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.usage_tracker import track_usage

from .data import Product

log = logging.getLogger(__name__)

USAGE_KEYS = ("llm_calls", "prompt_tokens", "completion_tokens")


def done_ids(path: str | Path) -> set[str]:
    """Ids already written to a JSONL output (a torn last line is ignored)."""
    p = Path(path)
    ids: set[str] = set()
    if p.exists():
        with p.open(encoding="utf-8") as f:
            for line in f:
                try:
                    ids.add(json.loads(line)["id"])
                except (json.JSONDecodeError, KeyError):
                    continue
    return ids


def drop_torn_tail(path: str | Path) -> None:
    """Cut a torn last line (a killed run's half-written record), so appending is safe."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    with p.open("rb+") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        body = f.read()
        cut = body.rfind(b"\n") + 1
        try:  # a whole record that only lacks its newline is kept
            json.loads(body[cut:])
            f.write(b"\n")
        except ValueError:
            f.truncate(cut)


def usage_totals(tracker: Any) -> dict[str, int]:
    """LLM calls and tokens recorded by a DSPy usage tracker."""
    calls = sum(len(v) for v in tracker.usage_data.values())
    totals = tracker.get_total_tokens()
    prompt = sum(int(u.get("prompt_tokens") or u.get("input_tokens") or 0) for u in totals.values())
    completion = sum(
        int(u.get("completion_tokens") or u.get("output_tokens") or 0) for u in totals.values()
    )
    return {"llm_calls": calls, "prompt_tokens": prompt, "completion_tokens": completion}


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of up to ``size`` items, read lazily."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


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


def _ask_all(program: Any, jobs: list[tuple[Product, list, dict]], concurrency: int) -> list:
    """The general expert on every routed product, ``concurrency`` requests in flight.

    Worker threads, each running in a copy of the caller's context (so ``dspy.context``
    settings apply): DSPy's synchronous path costs less CPU per request than its async one
    (BENCHMARKS.md), and a local llama.cpp engine serialises its calls anyway.
    """

    def one(job: tuple[Product, list, dict]) -> tuple[dspy.Prediction, dict[str, int], float]:
        prod, cands, routed = job
        t0 = time.perf_counter()
        with track_usage() as tracker:
            g = program.general(**program.general_inputs(prod, cands))
        return program.fuse(cands, g, routed), usage_totals(tracker), time.perf_counter() - t0

    if concurrency <= 1 or len(jobs) == 1:
        return [one(job) for job in jobs]
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(min(concurrency, len(jobs))) as pool:
        return list(pool.map(lambda job: ctx.copy().run(one, job), jobs))


class NewProducts:
    """Filters a stream of products down to the ones still to do, counting the rest.

    ``already_done``: the id is in the output from an earlier run (resume). ``duplicate_ids``:
    the id was seen earlier in this input; only its first occurrence is classified, so resume
    stays exact (a warning says how many).
    """

    def __init__(self, done: set[str]) -> None:
        self.done = done
        self.seen: set[str] = set()
        self.already_done = 0
        self.duplicate_ids = 0

    def __call__(self, products: Iterable[Product]) -> Iterator[Product]:
        for p in products:
            if p.id in self.seen:
                self.duplicate_ids += 1
                if self.duplicate_ids == 1:
                    log.warning(
                        "id %r appears more than once; only its first product is kept", p.id
                    )
                continue
            self.seen.add(p.id)
            if p.id in self.done:
                self.already_done += 1
                continue
            yield p


def _arity(fn: Callable[..., Any]) -> int:
    try:
        return len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return 1


def classify_chunk(program: Any, products: list[Product], concurrency: int = 1) -> list[dict]:
    """Both stages on one chunk; one record per product, in the chunk's order.

    Args:
        program: a :class:`dualexpert.pipeline.DualExpert`.
        products: the chunk.
        concurrency: LLM requests in flight at once.
    """
    t0 = time.perf_counter()
    cands = program.candidates_batch(products)
    stage1 = (time.perf_counter() - t0) / max(1, len(products))
    zero = dict.fromkeys(USAGE_KEYS, 0)
    out: list[dict | None] = [None] * len(products)
    jobs, where = [], []
    for i, (prod, cs) in enumerate(zip(products, cands, strict=True)):
        routed = program.route(cs)
        if isinstance(routed, dict):
            jobs.append((prod, cs, routed))
            where.append(i)
        else:
            out[i] = _record(prod, routed, zero, stage1)
    if jobs:
        answers = _ask_all(program, jobs, concurrency)
        for i, (pred, usage, secs) in zip(where, answers, strict=True):
            out[i] = _record(products[i], pred, usage, stage1 + secs)
    return [r for r in out if r is not None]


def classify_iter(
    program: Any,
    products: Iterable[Product],
    chunk_size: int = 64,
    concurrency: int = 1,
    skip: set[str] | None = None,
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
    todo = NewProducts(skip or set())(products)
    for chunk in chunks(todo, chunk_size):
        yield from classify_chunk(program, chunk, concurrency)


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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(out)  # else the first new record would be glued to the torn line
    new = NewProducts(done_ids(out))
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
    with out.open("a", encoding="utf-8") as f:
        for todo in chunks(new(products), chunk_size):
            recs = classify_chunk(program, todo, concurrency)
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
            f.flush()
            for r in recs:
                totals["products"] += 1
                totals["routed"] += int(r["routed"])
                if r["fallback"]:
                    totals["fallback"] += 1
                    why = str(r.get("fallback_reason") or "unknown")[:160]
                    totals["fallback_reasons"][why] = totals["fallback_reasons"].get(why, 0) + 1
                for k in USAGE_KEYS:
                    totals[k] += r["usage"][k]
            totals["seconds"] = time.perf_counter() - t0
            totals["cost"] = _lm_cost(lm, hist0)
            totals["already_done"], totals["duplicate_ids"] = new.already_done, new.duplicate_ids
            if progress is not None and recs:
                if two_args:
                    progress(len(recs), totals)  # type: ignore[call-arg]
                else:
                    progress(len(recs))  # type: ignore[call-arg]
    totals["already_done"], totals["duplicate_ids"] = new.already_done, new.duplicate_ids
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(out)
    new = NewProducts(done_ids(out))
    totals: dict[str, Any] = {"products": 0}
    t0 = time.perf_counter()
    with out.open("a", encoding="utf-8") as f:
        for todo in chunks(new(products), chunk_size):
            lines = []
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
                lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
            f.write("".join(lines))
            f.flush()
            totals["products"] += len(todo)
            if progress is not None:
                progress(len(todo))
    totals.update(already_done=new.already_done, duplicate_ids=new.duplicate_ids)
    totals["seconds"] = round(time.perf_counter() - t0, 3)
    return totals
