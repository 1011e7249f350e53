"""Unlabelled pairs for the cross-encoder's warm start.

Before it learns from the labels, the cross-encoder learns to reproduce the prior's
probabilities on unlabelled (query, title) pairs, so that it starts from a model that already
ranks instead of a new head on a bi-encoder's weights. The pairs are the user's own (a search
log, say) or, without them, the training pairs' queries and titles recombined: each query with
the titles nearest to it by the prior's bi-encoder, as a retrieval stage would have shown them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .prior import TextPair


def unique_texts(pairs: Sequence[Any]) -> list[TextPair]:
    """(query, title) of each pair, first occurrence kept, whitespace-trimmed."""
    seen: dict[TextPair, None] = {}
    for p in pairs:
        seen.setdefault((str(p.query).strip(), str(p.title).strip()), None)
    return [t for t in seen if t[0] and t[1]]


def given_pairs(pairs: Sequence[Any], n: int, seed: int = 0) -> list[TextPair]:
    """At most ``n`` distinct text pairs of the user's unlabelled ``pairs``: a seeded random
    sample, in file order (a log sorted by query would give few queries if cut at ``n``)."""
    texts = unique_texts(pairs)
    if len(texts) <= n:
        return texts
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
    return [texts[i] for i in keep]


def recombined_pairs(pairs: Sequence[Any], n: int, encoder: Any, seed: int = 0) -> list[TextPair]:
    """Up to ``n`` text pairs from the labelled ``pairs`` alone: every real pair, then each
    query with its nearest titles (``encoder``: a sentence-transformers model), nearest first,
    round-robin over the queries so that each gets its share; a seeded order of queries. With
    ``n`` or more real pairs, a seeded sample of them (:func:`given_pairs`)."""
    real = unique_texts(pairs)
    if len(real) >= n:
        return given_pairs(pairs, n, seed)
    queries = list(dict.fromkeys(q for q, _ in real))
    titles = list(dict.fromkeys(t for _, t in real))
    out = dict.fromkeys(real)
    if len(titles) < 2:
        return list(out)
    kw = {"batch_size": 64, "normalize_embeddings": True, "convert_to_numpy": True}
    qe, te = encoder.encode(queries, **kw), encoder.encode(titles, **kw)
    per_query = min(len(titles), -(-n // len(queries)) + 1)
    sims = qe @ te.T  # fewer than n real pairs, so at most n x n
    top = np.argpartition(-sims, per_query - 1, axis=1)[:, :per_query]
    nearest = np.take_along_axis(
        top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable"), axis=1
    )
    order = np.random.default_rng(seed).permutation(len(queries))
    for rank in range(per_query):
        for qi in order:
            out.setdefault((queries[qi], titles[nearest[qi, rank]]), None)
            if len(out) >= n:
                return list(out)
    return list(out)
