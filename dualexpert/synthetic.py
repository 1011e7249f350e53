"""The LLM as a teacher of the domain expert: synthetic training products for rare leaves.

Leaves with few labelled products are where the domain expert is weakest (macro F1 counts each
leaf once). :class:`ProductWriter` is a DSPy program that writes new product titles for a leaf
from its name, its path and a few of its real products; :func:`write_synthetic` runs it once over
every leaf with fewer than ``min_count`` training products and journals one JSON line per leaf
(``id``, ``category``, ``titles``, counts), so an interrupted run resumes without asking again.
:func:`load_synthetic` turns the file into :class:`~dualexpert.data.Product` records to add to
the training data (``dualexpert train --synthetic FILE``).

The LLM's output is untrusted: titles are cleaned, and copies of the leaf's real products, of its
name or path, repeats and over-long lines are dropped (counted as ``rejected``).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from dspy.utils.usage_tracker import track_usage

from .data import Product
from .journal import USAGE_KEYS, Journal, add_usage, read_records, usage_totals
from .signatures import WriteProducts
from .taxonomy import Taxonomy

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_COUNTER = re.compile(r"\b(?:\d+|[a-z])\b")  # "Door 3", "Brand B": a numbered template
_GENERIC = {"product", "item", "brand", "name", "title", "example", "sample", "new"}


def template_key(title: str) -> str:
    """``title`` case-folded, with lone numbers and letters and punctuation taken out: titles
    that differ only there ("Door 1", "Door 2") share a key."""
    words = re.sub(r"[^\w\s]", " ", _COUNTER.sub(" ", title.casefold())).split()
    return " ".join(words)


def clean_titles(
    titles: Iterable[Any], forbidden: Iterable[str] = (), seen: set[str] | None = None
) -> tuple[list[str], int]:
    """The acceptable titles among ``titles`` and how many were rejected.

    A title is kept when, after stripping list markers and quotes, it is 3 to
    :data:`MAX_TITLE_CHARS` characters on one line, holds none of ``<>{}[]`` (a path such as
    ``a > b``, markup or a JSON fragment), is not a placeholder ("Product 1", "Brand A"), and
    its :func:`template_key` is neither in ``forbidden`` (the real titles, the leaf's names) nor
    in ``seen`` (keys of the titles already kept; updated in place), so that "Door 1" ...
    "Door 8" count once.
    """
    seen = set() if seen is None else seen
    banned = {template_key(f) for f in forbidden}
    kept: list[str] = []
    rejected = 0
    for raw in titles:
        t = _BULLET.sub("", " ".join(str(raw).split())).strip(" \"'")
        key = template_key(t)
        odd = any(c in t for c in "<>{}[]")  # a path, markup or a JSON fragment, not a title
        placeholder = not key or set(key.split()) <= _GENERIC
        if not 3 <= len(t) <= MAX_TITLE_CHARS or odd or placeholder or key in banned or key in seen:
            rejected += 1
            continue
        seen.add(key)
        kept.append(t)
    return kept, rejected


class ProductWriter(dspy.Module):
    """``forward(category, path, examples, count, seed)`` → ``Prediction(titles=[...])``.

    Sampled at ``temperature`` (greedy decoding of a small model repeats itself and copies the
    examples); ``seed`` makes each call reproducible and, changed, asks for a new batch. The
    titles are returned as the LLM wrote them; :func:`clean_titles` filters them.
    """

    def __init__(self, temperature: float = 0.8, max_tokens: int = 256) -> None:
        super().__init__()
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.write = dspy.Predict(WriteProducts)

    def forward(
        self,
        category: str,
        path: str,
        examples: Sequence[str] = (),
        count: int = 8,
        seed: int = 0,
    ) -> dspy.Prediction:
        shown = "\n".join(f"- {e[:160]}" for e in examples) or "(none)"
        cfg = {"temperature": self.temperature, "seed": seed, "max_tokens": self.max_tokens}
        pred = self.write(category=category, path=path, examples=shown, count=count, config=cfg)
        return dspy.Prediction(titles=[str(t) for t in pred.titles])


def titles_by_leaf(taxonomy: Taxonomy, products: Iterable[Product]) -> dict[str, list[str]]:
    """``{leaf id: titles of its labelled products}``."""
    out: dict[str, list[str]] = defaultdict(list)
    for p in products:
        if p.category is not None:
            out[taxonomy.by_path(p.category).id].append(p.title)
    return out


def rare_leaves(taxonomy: Taxonomy, products: Iterable[Product], min_count: int) -> list[str]:
    """Ids of the leaves with fewer than ``min_count`` labelled products (none counts too)."""
    by_leaf = titles_by_leaf(taxonomy, products)
    return [c.id for c in taxonomy.leaves if len(by_leaf.get(c.id, ())) < min_count]


def write_synthetic(
    taxonomy: Taxonomy,
    products: Sequence[Product],
    out: str | Path,
    program: Callable[..., Any] | None = None,
    min_count: int = 10,
    per_leaf: int = 8,
    max_calls: int = 3,
    n_examples: int = 0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_failed_in_row: int | None = 5,
) -> dict[str, Any]:
    """Write up to ``per_leaf`` synthetic titles for every rare leaf to ``out`` (JSONL).

    A leaf gets up to ``max_calls`` LLM calls (a new sampling seed each) until ``per_leaf``
    titles pass :func:`clean_titles`. Leaves already in ``out`` are skipped, so a rerun resumes.
    A failed call is logged and counted and the run goes on. A leaf whose every call failed
    for another reason than an unparseable answer (the network, the server) is not written
    (counted in ``failed_leaves``), so a rerun asks it again; one the LLM answered, even
    uselessly, is written with what passed, so a rerun does not ask again. After
    ``max_failed_in_row`` such leaves in a row the LLM is taken as unreachable and the run stops
    early (``stopped`` in the totals says why; None never stops): a dead server costs a few
    leaves' retries, not one per rare leaf.
    Returns totals: leaves, written, skipped, failed leaves, titles, rejected, failed calls, LLM
    usage, seconds, and ``stopped`` (None when every leaf was tried).
    """
    if per_leaf < 1 or max_calls < 1:
        raise ValueError("per_leaf and max_calls must be at least 1")
    program = program or ProductWriter()
    by_leaf = titles_by_leaf(taxonomy, products)
    todo = [c.id for c in taxonomy.leaves if len(by_leaf.get(c.id, ())) < min_count]
    journal = Journal(out)
    done = journal.done()
    totals: dict[str, Any] = {"leaves": len(todo), "written": 0, "skipped": 0, "titles": 0}
    totals.update(failed_leaves=0, rejected=0, failed_calls=0, stopped=None)
    in_row = 0
    usage = dict.fromkeys(USAGE_KEYS, 0)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    with journal.open() as write:
        for i, cid in enumerate(todo):
            if cid in done:
                totals["skipped"] += 1
            else:
                real = by_leaf.get(cid, [])
                examples = rng.sample(real, k=min(n_examples, len(real)))
                leaf = taxonomy.get(cid)
                forbidden = [*real, leaf.name, taxonomy.descriptive_name(cid)]
                titles: list[str] = []
                seen: set[str] = set()
                rejected = answered = 0
                for call in range(max_calls):
                    try:
                        with track_usage() as tracker:
                            pred = program(
                                category=taxonomy.descriptive_name(cid),
                                path=taxonomy.full_path(cid),
                                examples=examples,
                                count=per_leaf - len(titles) + 2,  # a margin for rejects
                                seed=seed * 1000 + call,
                            )
                        add_usage(usage, usage_totals(tracker))
                        answered += 1
                    except Exception as e:  # one bad answer must not stop a long run
                        totals["failed_calls"] += 1
                        # an answer that does not parse is this LLM's answer (asking again
                        # gives it again); anything else (network, server) may pass
                        answered += isinstance(e, AdapterParseError)
                        log.warning("leaf %s, call %d: %s: %s", cid, call, type(e).__name__, e)
                        continue
                    kept, bad = clean_titles(pred.titles, forbidden, seen)
                    titles += kept
                    rejected += bad
                    if len(titles) >= per_leaf:
                        break
                if not answered:
                    totals["failed_leaves"] += 1
                    in_row += 1
                    if progress:
                        progress(i + 1, len(todo))
                    if max_failed_in_row is not None and in_row >= max_failed_in_row:
                        totals["stopped"] = (
                            f"the LLM failed on {in_row} leaves in a row (last: {cid}); "
                            f"{len(todo) - i - 1} leaves not tried, a rerun resumes"
                        )
                        log.warning("synthesize stopped: %s", totals["stopped"])
                        break
                    continue
                in_row = 0
                titles = titles[:per_leaf]
                write([{"id": cid, "category": list(leaf.path), "titles": titles,
                        "rejected": rejected}])  # fmt: skip
                totals["written"] += 1
                totals["titles"] += len(titles)
                totals["rejected"] += rejected
            if progress:
                progress(i + 1, len(todo))
    totals.update(usage, seconds=round(time.perf_counter() - t0, 2))
    return totals


def load_synthetic(path: str | Path, taxonomy: Taxonomy | None = None) -> list[Product]:
    """The synthetic products of a :func:`write_synthetic` file (torn last line ignored).

    With ``taxonomy``, a line whose category it does not hold raises ``ValueError`` naming the
    line and the category.
    """
    out: list[Product] = []
    for n, rec in enumerate(read_records(path), start=1):
        try:
            cid, path_, titles = str(rec["id"]), tuple(rec["category"]), rec["titles"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}, line {n}: field {e} is missing or malformed") from None
        if not isinstance(titles, list):
            raise ValueError(f"{path}, line {n} (leaf {cid}): field 'titles' is not a list")
        if taxonomy is not None and path_ not in taxonomy:
            raise ValueError(
                f"{path}, line {n} (leaf {cid}): field 'category' {' > '.join(path_)!r} is "
                "not in the model's taxonomy"
            )
        out += [
            Product(id=f"syn:{cid}:{j}", title=t, category=path_)
            for j, t in enumerate(titles)
            if str(t).strip()
        ]
    return out
