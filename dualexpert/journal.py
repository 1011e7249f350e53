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

import ctypes
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

USAGE_KEYS = ("llm_calls", "prompt_tokens", "completion_tokens")
BLOCK = 4096  # ids hashed and looked up at once
SEGMENT = 1 << 19  # ids in a closed segment of an IdIndex (4 MB of hashes)


def id_hashes(values: Sequence[str]) -> np.ndarray:
    """Stable 64-bit hashes of ids (the same in every process and on every machine)."""
    digests = b"".join(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest() for v in values)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def release_freed_memory() -> None:
    """Hand memory that was freed back to the OS (glibc keeps it otherwise, and the resident
    size of a long run creeps up with every reallocated array); a no-op elsewhere."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


def _in_sorted(sorted_: np.ndarray, h: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_, h)
    pos[pos == len(sorted_)] = 0
    return (sorted_[pos] == h) if len(sorted_) else np.zeros(len(h), dtype=bool)


class IdIndex:
    """A growing set of ids stored as sorted 64-bit hashes in NumPy arrays (8 bytes an id).

    Ids are added a block at a time (:meth:`add_new`), vectorised, with no Python object kept
    per id. New hashes go to a small sorted array, merged into the open segment when it passes
    an eighth of it (adding n ids costs O(n log n) in all); a segment that reaches
    ``segment`` ids is closed and never copied again. So a merge allocates at most one segment
    (4 MB by default) whatever the number of ids: the peak memory of a long run stays within a
    few MB of its steady size (one array over the whole index, re-merged, briefly held several
    copies of it: 68 MB of peak for 8 MB of hashes at a million ids).
    """

    def __init__(self, ids: Iterable[str] = (), segment: int = SEGMENT) -> None:
        if segment < 1:
            raise ValueError(f"segment must be positive, not {segment}")
        self.segment = segment
        self._closed: list[np.ndarray] = []
        self._open = np.zeros(0, dtype=np.uint64)
        self._recent = np.zeros(0, dtype=np.uint64)
        for block in chunks(ids, BLOCK):
            self.add_new(block)

    def __len__(self) -> int:
        return sum(map(len, self._closed)) + len(self._open) + len(self._recent)

    def __contains__(self, value: str) -> bool:
        return bool(self.contains([value])[0])

    def _known(self, h: np.ndarray) -> np.ndarray:
        known = _in_sorted(self._open, h) | _in_sorted(self._recent, h)
        for part in self._closed:
            known |= _in_sorted(part, h)
        return known

    def contains(self, values: Sequence[str]) -> np.ndarray:
        """Whether each id is in the index (a boolean array)."""
        return self._known(id_hashes(values))

    def add(self, value: str) -> bool:
        """Add one id; returns False if it was there already."""
        return bool(self.add_new([value])[0])

    def add_new(self, values: Sequence[str]) -> np.ndarray:
        """Add a block of ids; returns which of them were new (a repeat within the block counts
        once, at its first place)."""
        if not values:
            return np.zeros(0, dtype=bool)
        h = id_hashes(values)
        _, first = np.unique(h, return_index=True)
        new = np.zeros(len(h), dtype=bool)
        new[first] = True
        new &= ~self._known(h)
        if new.any():
            self._recent = np.union1d(self._recent, h[new])
            if len(self._recent) > max(BLOCK * 16, len(self._open) // 8):
                self._merge_recent()
        return new

    def _merge_recent(self) -> None:
        """Insert the recent hashes into the open segment (both sorted and disjoint: one new
        array, no sort); close the segment when it is full."""
        room = self.segment - len(self._open)
        take, rest = self._recent[:room], self._recent[room:]
        self._open = np.insert(self._open, np.searchsorted(self._open, take), take)
        self._recent = np.zeros(0, dtype=np.uint64)
        if len(self._open) >= self.segment:
            self._closed.append(self._open)
            self._open = np.zeros(0, dtype=np.uint64)
        if len(rest):
            self._recent = rest
            self._merge_recent()
        release_freed_memory()


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


def ramped_chunks(items: Iterable[Any], size: int, first: int = 8) -> Iterator[list[Any]]:
    """Like :func:`chunks`, but the first chunks are smaller (``first``, then doubling up to
    ``size``): the first answers, and the first LLM requests of a classify run, come after a
    few products' work instead of a whole chunk's."""
    it = iter(items)
    n = min(first, size)
    while batch := list(islice(it, n)):
        yield batch
        n = min(2 * n, size)


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


def first_of_each_id(
    items: Iterable[Any], key: Callable[[Any], str], repeated: Callable[[str], None] | None = None
) -> Iterator[list[Any]]:
    """``items`` in blocks (read lazily, :data:`BLOCK` at a time) without those whose key came
    earlier in ``items``; the key of each one left out is passed to ``repeated``."""
    seen = IdIndex()
    for block in chunks(items, BLOCK):
        keys = [key(x) for x in block]
        kept = []
        for item, k, is_first in zip(block, keys, seen.add_new(keys), strict=True):
            if is_first:
                kept.append(item)
            elif repeated is not None:
                repeated(k)
        yield kept


class Journal:
    """An append-only, resumable JSONL file of records keyed by ``key`` (default ``id``).

    >>> j = Journal("runs/out.jsonl")                 # doctest: +SKIP
    >>> todo = j.new(items)                           # skips ids already written
    >>> with j.open() as write:                       # doctest: +SKIP
    ...     write([{"id": "a", "category": "x"}])     # one batch, flushed

    ``new`` also drops the second and later occurrences of an id within the input (counted in
    ``duplicate_ids``; only the first is processed), so resume stays exact.
    """

    def __init__(self, path: str | Path, key: str = "id", fields: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.key = key
        # what every record of this kind carries: a file of other records (another command's
        # output, or a catalogue given as --out by mistake) is refused, not taken as done work
        self.fields = (key, *fields)
        self.already_done = 0
        self.duplicate_ids = 0
        self._done: IdIndex | None = None

    def records(self) -> Iterator[dict[str, Any]]:
        """The whole records written so far (none if the file does not exist yet)."""
        if self.path.exists():
            yield from read_records(self.path)

    def done(self) -> IdIndex:
        """The ids already in the file (read once). A line that is not a record of this kind
        (other than a killed run's torn last line) is an error that names it."""
        if self._done is None:
            recs = self._checked_records()
            self._done = IdIndex(str(r[self.key]) for r in recs if r[self.key] is not None)
        return self._done

    def _checked_records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder; the output is a JSONL file")
        with self.path.open(encoding="utf-8", errors="replace") as f:
            line = f.readline()
            n = 1
            while line:
                following = f.readline()
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    if not following and not line.endswith("\n"):
                        break  # the torn last line of a killed run
                    rec = None
                missing = [k for k in self.fields if not isinstance(rec, dict) or k not in rec]
                if missing and line.strip():
                    what = (
                        "not a JSON record"
                        if not isinstance(rec, dict)
                        else (f"a record without {missing[0]!r}")
                    )
                    raise ValueError(
                        f"{self.path}:{n}: {what}: the file holds other data than this "
                        "command writes; give another output file"
                    )
                if isinstance(rec, dict):
                    yield rec
                line, n = following, n + 1

    def new(self, items: Iterable[Any], key: Callable[[Any], str] | None = None) -> Iterator[Any]:
        """The items still to do, lazily (a block at a time): not in the file, and not seen
        earlier in ``items``."""
        key = key or (lambda x: str(getattr(x, self.key)))
        done = self.done()
        for block in first_of_each_id(items, key, self._repeated):
            keys = [key(x) for x in block]
            finished = done.contains(keys) if len(done) else np.zeros(len(keys), dtype=bool)
            for item, is_done in zip(block, finished, strict=True):
                if is_done:
                    self.already_done += 1
                else:
                    yield item

    def _repeated(self, k: str) -> None:
        self.duplicate_ids += 1
        if self.duplicate_ids == 1:
            log.warning("id %r appears more than once; only its first is kept", k)

    @contextmanager
    def open(self) -> Iterator[Callable[[Iterable[dict[str, Any]]], int]]:
        """A writer: call it with a batch of records; they are appended and flushed at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done()  # the file is checked to hold this kind of records before it is touched
        drop_torn_tail(self.path)  # else the first new record would be glued to the torn line
        with self.path.open("a", encoding="utf-8") as f:
            yield lambda recs: _append(f, recs)


def _append(f: IO[str], records: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    f.write("".join(lines))
    f.flush()
    return len(lines)
