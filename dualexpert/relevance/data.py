"""Labelled query–product pairs: loading, binary labels, and a split by query.

Reads CSV, JSONL or Parquet (Home Depot's ``pairs.csv`` by default column names). The binary
label is ``relevance >= threshold`` (2.5 by default, the usual Home Depot cut). A bad record gets
a :class:`~dualexpert.data.RecordError` naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ..data import RecordError, iter_rows


class PairColumns(BaseModel):
    """Which columns hold the id, query, title and relevance (a score or a 0/1 label)."""

    id: str | None = "id"
    query: str = "search_term"
    title: str = "product_title"
    relevance: str | None = "relevance"


class RelevancePair(BaseModel):
    """One query–product pair. ``label`` is 1 (relevant), 0 (not) or ``None`` (unlabelled)."""

    id: str
    query: str = Field(min_length=1)
    title: str = Field(min_length=1)
    relevance: float | None = None
    label: int | None = None

    def label_text(self) -> str:
        if self.label is None:
            raise ValueError(f"pair {self.id} has no label")
        return "relevant" if self.label else "not relevant"


def _field(row: dict, col: str | None, file: str, line: int, required: bool) -> str:
    if col is None:
        return ""
    v = row.get(col)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise RecordError(file, line, col, "missing" if col not in row else "value is empty")
        return ""
    return str(v).strip()


def load_pairs(
    path: str | Path,
    columns: PairColumns | None = None,
    threshold: float = 2.5,
    on_error: Literal["raise", "skip"] = "raise",
    limit: int | None = None,
) -> list[RelevancePair]:
    """Read labelled (or unlabelled) pairs; ``label = relevance >= threshold``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"pairs file {p} does not exist")
    cols = columns or PairColumns()
    out: list[RelevancePair] = []
    for line, row in iter_rows(p):
        try:
            if "__error__" in row:
                raise RecordError(str(p), line, "<record>", row["__error__"])
            rel_raw = _field(row, cols.relevance, str(p), line, required=False)
            rel: float | None = None
            if rel_raw:
                try:
                    rel = float(rel_raw)
                except ValueError:
                    raise RecordError(
                        str(p), line, cols.relevance or "", f"not a number: {rel_raw!r}"
                    ) from None
            out.append(
                RelevancePair(
                    id=_field(row, cols.id, str(p), line, False) or str(line),
                    query=_field(row, cols.query, str(p), line, True),
                    title=_field(row, cols.title, str(p), line, True),
                    relevance=rel,
                    label=None if rel is None else int(rel >= threshold),
                )
            )
        except RecordError:
            if on_error == "raise":
                raise
        if limit is not None and len(out) >= limit:
            break
    return out


def _bucket(query: str, seed: int | str) -> float:
    h = hashlib.sha256(f"{seed}:{query.strip().lower()}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_by_query(
    pairs: Sequence[RelevancePair], test_fraction: float = 0.2, seed: int | str = 0
) -> tuple[list[RelevancePair], list[RelevancePair]]:
    """Train/test split in which no query (case-insensitive) is on both sides. Splits with
    different seeds are independent; the same seed cuts the same queries."""
    train, test = [], []
    for pr in pairs:
        (test if _bucket(pr.query, seed) < test_fraction else train).append(pr)
    return train, test


def sample_pairs(pairs: Sequence[RelevancePair], n: int, seed: int = 0) -> list[RelevancePair]:
    """A fixed random sample of ``n`` pairs, in a seeded random order.

    Samples are nested: the first ``m`` pairs of a sample of ``n > m`` are the sample of ``m``,
    so a long rationale run can be cut short and still give the smaller training sets.
    """
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    return [pairs[i] for i in order[:n]]
