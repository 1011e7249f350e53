"""The one resumable JSONL journal both halves of the project write their long runs to.

A journal is an append-only JSONL file of records keyed by ``id``. Each batch of records is
written and flushed as it finishes; a run killed with ``kill -9`` leaves at most one torn last
line, which the reader ignores and :meth:`Journal.open` cuts before appending. A rerun on the same
file skips the ids already there, so nothing is lost and nothing is written twice.

The ids already done are held as 64-bit hashes in sorted NumPy arrays (:class:`IdIndex`), about
8 bytes an id, so resuming a catalogue of 10^8 products does not need gigabytes of Python
strings. Two different ids share a hash with probability about n²/2^65 (3·10^-8 at a million ids).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

USAGE_KEYS = ("llm_calls", "prompt_tokens", "completion_tokens")


def id_hash(value: str) -> int:
    """A stable 64-bit hash of an id (the same in every process and on every machine)."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little")


class IdIndex:
    """A growing set of ids stored as sorted 64-bit hashes (about 8 bytes an id).

    New ids go to a small Python set; it is merged into the sorted array when it grows past an
    eighth of it, so adding n ids costs O(n log n) in all.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._recent: set[int] = set()
        for i in ids:
            self.add(i)

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, value: str) -> bool:
        return self._has(id_hash(value))

    def _has(self, h: int) -> bool:
        if h in self._recent:
            return True
        pos = int(np.searchsorted(self._sorted, np.uint64(h)))
        return pos < len(self._sorted) and int(self._sorted[pos]) == h

    def add(self, value: str) -> bool:
        """Add an id; returns False if it was there already."""
        h = id_hash(value)
        if self._has(h):
            return False
        self._recent.add(h)
        if len(self._recent) > max(4096, len(self._sorted) // 8):
            fresh = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, fresh)
            self._recent.clear()
        return True


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every whole JSON record of a journal; a torn line (a killed run's last) is skipped."""
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                yield rec


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


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of up to ``size`` items, read lazily."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def usage_totals(tracker: Any) -> dict[str, int]:
    """LLM calls and tokens recorded by a DSPy usage tracker (``dspy.track_usage``)."""
    calls = sum(len(v) for v in tracker.usage_data.values())
    totals = tracker.get_total_tokens()
    prompt = sum(int(u.get("prompt_tokens") or u.get("input_tokens") or 0) for u in totals.values())
    completion = sum(
        int(u.get("completion_tokens") or u.get("output_tokens") or 0) for u in totals.values()
    )
    return {"llm_calls": calls, "prompt_tokens": prompt, "completion_tokens": completion}


def add_usage(totals: dict[str, Any], usage: dict[str, int]) -> None:
    """Add one call's :func:`usage_totals` into running totals."""
    for k in USAGE_KEYS:
        totals[k] = totals.get(k, 0) + int(usage.get(k, 0))


class Journal:
    """An append-only, resumable JSONL file of records keyed by ``key`` (default ``id``).

    >>> j = Journal("runs/out.jsonl")                 # doctest: +SKIP
    >>> todo = j.new(items)                           # skips ids already written
    >>> with j.open() as write:                       # doctest: +SKIP
    ...     write([{"id": "a", "category": "x"}])     # one batch, flushed

    ``new`` also drops the second and later occurrences of an id within the input (counted in
    ``duplicate_ids``; only the first is processed), so resume stays exact.
    """

    def __init__(self, path: str | Path, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self.already_done = 0
        self.duplicate_ids = 0
        self._done: IdIndex | None = None

    def records(self) -> Iterator[dict[str, Any]]:
        """The whole records written so far (none if the file does not exist yet)."""
        if self.path.exists():
            yield from read_records(self.path)

    def done(self) -> IdIndex:
        """The ids already in the file (read once)."""
        if self._done is None:
            self._done = IdIndex(
                str(r[self.key]) for r in self.records() if r.get(self.key) is not None
            )
        return self._done

    def new(self, items: Iterable[Any], key: Callable[[Any], str] | None = None) -> Iterator[Any]:
        """The items still to do, lazily: not in the file, and not seen earlier in ``items``."""
        key = key or (lambda x: str(getattr(x, self.key)))
        done, seen = self.done(), IdIndex()
        for item in items:
            k = key(item)
            if not seen.add(k):
                self.duplicate_ids += 1
                if self.duplicate_ids == 1:
                    log.warning("id %r appears more than once; only its first record is kept", k)
                continue
            if k in done:
                self.already_done += 1
                continue
            yield item

    @contextmanager
    def open(self) -> Iterator[Callable[[Iterable[dict[str, Any]]], int]]:
        """A writer: call it with a batch of records; they are appended and flushed at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(self.path)  # else the first new record would be glued to the torn line
        with self.path.open("a", encoding="utf-8") as f:
            yield lambda recs: _append(f, recs)


def _append(f: IO[str], records: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    f.write("".join(lines))
    f.flush()
    return len(lines)
