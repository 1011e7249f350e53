"""Product records and catalogue readers (CSV, JSONL, Parquet) with a column mapping.

No torch and no DSPy here. Errors name the file, the line (or row) and the field.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .taxonomy import PATH_SEP

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


CONTEXT_MAX_CHARS = 200
_URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]*", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")
_WEB_WORDS = frozenset(
    {"html", "htm", "shtml", "php", "asp", "aspx", "jsp", "cgi", "www", "http", "https"}
)


def context_text(*values: str) -> str:
    """Other text about a product as plain words: a shop's breadcrumb, a URL, a brand.

    A part that is a URL or a URL path (``|``-separated parts are taken one by one) keeps the
    words of its path only: the scheme, host, words of one or two letters, anything with a
    digit (ids, numbers) and web suffixes such as ``html`` or ``php`` go.
    Words repeated across the parts are kept once (a breadcrumb often repeats its URL), and the
    result is capped at :data:`CONTEXT_MAX_CHARS`.
    """
    words: list[str] = []
    seen: set[str] = set()
    for value in values:
        for part in (value or "").split("|"):
            part = part.strip()
            if _URL_HOST.match(part) or part.startswith("/"):
                tokens = [
                    t
                    for t in re.split(r"[^\w]+", _URL_HOST.sub("", part))
                    if len(t) > 2 and _WORD.fullmatch(t) and t.lower() not in _WEB_WORDS
                ]
            else:
                tokens = part.split()
            for t in tokens:
                if t.lower() not in seen:
                    seen.add(t.lower())
                    words.append(t)
    return " ".join(words)[:CONTEXT_MAX_CHARS].strip()


class Product(BaseModel):
    """One catalogue item. ``category`` is the path from the root to the leaf, if labelled.

    ``context`` is other text about the product that is neither its title nor its
    description, such as the shop's own breadcrumb or the words of its URL (see
    :func:`context_text`). Models read it between the title and the description.
    """

    model_config = ConfigDict(frozen=True)

    id: str = ""
    title: str = Field(min_length=1)
    description: str = ""
    context: str = ""
    category: tuple[str, ...] | None = None

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("title is blank")
        return v

    @field_validator("category")
    @classmethod
    def _path_not_blank(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and (not v or any(not s.strip() for s in v)):
            raise ValueError("category path has an empty level")
        return v

    def text(self, max_chars: int = 1000) -> str:
        """Title, context and description as one model input.

        Context words that the title already has are left out: an encoder reads the first few
        dozen tokens only, and a URL often repeats the title.
        """
        parts = [self.title]
        if self.context:
            in_title = {w.lower() for w in _WORD.findall(self.title)}
            context = " ".join(w for w in self.context.split() if w.lower() not in in_title)
            if _WORD.search(context):
                parts.append(context)
        if self.description and self.description.strip() != self.title.strip():
            parts.append(self.description)
        return " . ".join(parts)[:max_chars]


def as_product(x: Product | str | dict) -> Product:
    """A :class:`Product` from a Product, a bare title, or a dict of its fields."""
    if isinstance(x, Product):
        return x
    if isinstance(x, str):
        return Product(title=x)
    if isinstance(x, dict):
        return Product(**x)
    raise TypeError(f"expected a Product, a str or a dict, got {type(x).__name__}")


def as_products(items: Iterable[Product | str | dict]) -> list[Product]:
    """:func:`as_product` over a list of products; a bad one is an error that names it.

    A bare string is refused rather than read as a list of one-letter titles. Keys of a dict
    that are not :class:`Product` fields (a catalogue's other columns) are ignored.
    """
    if isinstance(items, str | bytes | Product | dict):
        raise TypeError(
            f"expected a list of products, got a single {type(items).__name__}: wrap it in a list"
        )
    out = []
    for i, x in enumerate(items):
        try:
            out.append(as_product(x))
        except ValidationError as e:
            err = e.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "<record>"
            ident = x.get("id") if isinstance(x, dict) else None
            which = f"product {i}" + (f" (id {ident!r})" if ident else "")
            raise ValueError(f"{which}: field {name!r}: {err['msg']}") from None
        except TypeError as e:
            raise TypeError(f"product {i}: {e}") from None
    return out


class RecordError(ValueError):
    """A catalogue record that could not be read; names the file, line and field."""

    def __init__(self, file: str, line: int, field_name: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field_name, message
        where = f"{file}:{line}" if line else file  # 0: the line is not known any more
        super().__init__(f"{where}: field {field_name!r}: {message}")


class ColumnMap(BaseModel):
    """Which columns of a file hold which fields.

    Give either ``category`` (one column holding a path, split on ``separator``) or ``levels``
    (one column per level, root first). Both may be empty for unlabelled catalogues.
    ``context`` names columns of other text about the product (a breadcrumb, a URL, a
    brand); a file without them reads as if they were empty. A misspelt key is an error, not
    a silently ignored setting.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    title: str = "title"
    description: str | None = None
    category: str | None = None
    separator: str = ">"
    levels: list[str] = Field(default_factory=list)
    context: list[str] = Field(default_factory=list)


PRESETS: dict[str, ColumnMap] = {
    "mwpd": ColumnMap(
        id="ID",
        title="Name",
        description="Description",
        levels=["lvl1", "lvl2", "lvl3"],
        context=["CategoryText", "URL"],
    ),
    "bigbasket": ColumnMap(
        id="index", title="product", levels=["category", "sub_category", "type"]
    ),
    "default": ColumnMap(id="id", title="title", description="description", category="category"),
}


def detect_columns(columns: Sequence[str]) -> ColumnMap:
    """Pick a preset whose columns the file has; falls back to ``title``/``category``."""
    cols = set(columns)
    for name in ("mwpd", "bigbasket"):
        m = PRESETS[name]
        if m.title in cols and set(m.levels) <= cols:
            return m
    m = PRESETS["default"].model_copy()
    if "id" not in cols:
        m.id = None
    if "description" not in cols:
        m.description = None
    if "category" not in cols:
        m.category = None
        levels = sorted(c for c in cols if c.startswith("lvl"))
        m.levels = levels
    return m


@dataclass
class Catalogue:
    """Products read from one file, plus what was skipped and why."""

    products: list[Product]
    source: str = ""
    skipped: int = 0
    errors: list[RecordError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.products)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products)

    def __getitem__(self, i: int) -> Product:
        return self.products[i]

    @property
    def paths(self) -> list[tuple[str, ...]]:
        return [p.category for p in self.products if p.category is not None]


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_row_number, row)``; numbers are 1-based file lines (CSV/JSONL)."""
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield lineno, {"__error__": f"invalid JSON: {e.msg} at column {e.colno}"}
                    continue
                if not isinstance(obj, dict):
                    yield lineno, {"__error__": "a JSON line must be an object"}
                    continue
                yield lineno, obj
    elif suffix in (".csv", ".tsv"):
        yield from _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise ValueError(f"{path}: unsupported catalogue format {suffix!r} (csv, jsonl, parquet)")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa

    row_no = 0
    try:
        # one row group at a time, decoded a batch at a time from 1 MB reads on this thread:
        # Arrow then holds one row group's pages (a reader over all row groups reads ahead into
        # the next ones, and threaded reads hold whole column chunks: tens of MB more)
        reader = parquet_file(path, buffer_size=1 << 20)
        for group in range(reader.num_row_groups):
            batches = reader.iter_batches(batch_size=4096, row_groups=[group], use_threads=False)
            for batch in batches:
                for row in batch.to_pylist():
                    row_no += 1
                    yield row_no, row
    except (pa.ArrowException, OSError) as e:
        raise ValueError(
            f"{path}: not a readable Parquet file after row {row_no} ({e}); is it truncated?"
        ) from None


def parquet_file(path: Path, **options: Any):
    """``pyarrow.parquet.ParquetFile``, with a damaged file reported by name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path, **options)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """CSV rows, with the damage a stray quote or delimiter does reported, not absorbed.

    A row with more or fewer fields than the header, or a quoted field that swallowed whole
    lines that read as rows of their own (an unbalanced quote), is yielded as an error record
    at its first line.
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        width, last = len(header), reader.line_num
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield last + 1, {"__error__": f"unreadable CSV ({e})"}
                return
            first, last = last + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != width:
                yield (
                    first,
                    {
                        "__error__": f"{len(fields)} fields where the header has {width} (an "
                        "unbalanced quote or a stray delimiter?)"
                    },
                )
                continue
            if last > first and _swallowed_rows(fields, width, delimiter):
                yield (
                    first,
                    {
                        "__error__": f"a quoted field runs from line {first} to {last} and holds "
                        "lines that read as rows of their own (an unbalanced quote?)"
                    },
                )
                continue
            yield first, dict(zip(header, fields, strict=True))


def _swallowed_rows(fields: list[str], width: int, delimiter: str) -> bool:
    """Whether a multi-line field holds lines with the header's field count (real rows)."""
    for value in fields:
        for line in value.splitlines()[1:]:
            try:
                if width > 1 and len(next(csv.reader([line], delimiter=delimiter))) == width:
                    return True
            except (csv.Error, StopIteration):
                continue
    return False


#: rows read to find a file's columns (JSONL records may each carry only some of them)
COLUMN_SAMPLE = 1000


def _columns_of(path: Path) -> list[str]:
    cols: dict[str, None] = {}
    for _, row in islice(iter_rows(path), COLUMN_SAMPLE):
        if "__error__" not in row:
            cols.update(dict.fromkeys(row))
    return list(cols)


def _cell(
    row: dict[str, Any], col: str, file: str, line: int, required: bool, id_like: bool = False
) -> str:
    if col not in row:
        if required:
            raise RecordError(file, line, col, "column is missing")
        return ""
    v = row[col]
    if v is None or (isinstance(v, float) and v != v):  # null, or a NaN from a data frame
        if required:
            raise RecordError(file, line, col, "value is empty")
        return ""
    if isinstance(v, str):
        return v
    if id_like and isinstance(v, int) and not isinstance(v, bool):
        return str(v)  # numeric ids are common in Parquet and JSONL
    raise RecordError(file, line, col, f"expected text, got {type(v).__name__} {v!r:.60}")


def parse_record(row: dict[str, Any], cmap: ColumnMap, file: str, line: int) -> Product:
    """Turn one raw row into a :class:`Product`, or raise :class:`RecordError`."""
    if "__error__" in row:
        raise RecordError(file, line, "<record>", row["__error__"])
    category: tuple[str, ...] | None = None
    if cmap.levels:
        vals = [_cell(row, c, file, line, required=False).strip() for c in cmap.levels]
        while vals and not vals[-1]:
            vals.pop()  # shallower paths are allowed
        if vals:
            for c, v in zip(cmap.levels, vals, strict=False):
                if not v:
                    raise RecordError(file, line, c, "level is empty but a deeper level is set")
            category = tuple(vals)
    elif cmap.category:
        raw = _cell(row, cmap.category, file, line, required=False).strip()
        if raw:
            category = tuple(s.strip() for s in raw.split(cmap.separator))
    ident = str(line)  # a file without ids: the row number, stable, so resume stays exact
    if cmap.id:  # a file with ids: an empty one is an error (a row number could be another's id)
        ident = _cell(row, cmap.id, file, line, True, True).strip()
        if not ident:
            raise RecordError(file, line, cmap.id, "value is empty")
    data = {
        "id": ident,
        "title": _cell(row, cmap.title, file, line, True),
        "description": _cell(row, cmap.description, file, line, False) if cmap.description else "",
        "context": context_text(*(_cell(row, c, file, line, False) for c in cmap.context)),
        "category": category,
    }
    try:
        return Product(**data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = str(err["loc"][0]) if err["loc"] else "<record>"
        col = {"title": cmap.title, "description": cmap.description, "id": cmap.id}.get(loc)
        col = col or (cmap.category or ",".join(cmap.levels) if loc == "category" else loc)
        raise RecordError(file, line, col, err["msg"]) from None


def _column_map(p: Path, columns: ColumnMap | str | None) -> ColumnMap:
    if isinstance(columns, str) and columns.strip().startswith("{"):
        try:
            return ColumnMap.model_validate_json(columns)
        except ValidationError as e:
            raise ValueError(f"the column map {columns!r} is not valid: {e}") from None
    if isinstance(columns, str):
        try:
            return PRESETS[columns]
        except KeyError:
            raise ValueError(f"unknown column preset {columns!r}: {sorted(PRESETS)}") from None
    return columns or detect_columns(_columns_of(p))


def load_catalogue(
    path: str | Path,
    columns: ColumnMap | str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    limit: int | None = None,
) -> Catalogue:
    """Read a CSV, TSV, JSONL or Parquet catalogue.

    ``columns`` is a :class:`ColumnMap`, a preset name (``mwpd``, ``bigbasket``, ``default``),
    a ColumnMap as JSON, or ``None`` to detect from the header. With ``on_error="skip"`` bad
    records are counted in ``Catalogue.skipped`` (and kept in ``errors``) instead of raising.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"catalogue {p} does not exist or is not a file")
    cmap = _column_map(p, columns)
    out = Catalogue(products=[], source=str(p))
    for line, row in iter_rows(p):
        try:
            out.products.append(parse_record(row, cmap, str(p), line))
        except RecordError as e:
            if on_error == "raise":
                raise
            out.skipped += 1
            out.errors.append(e)
        if limit is not None and len(out.products) >= limit:
            break
    return out


def labelled_only(cat: Catalogue, skip: bool) -> Catalogue:
    """The catalogue's labelled products, for training.

    An unlabelled product is an error naming it, or, with ``skip``, a counted skip. A catalogue
    with no labelled product left is an error either way.
    """
    keep, errors = [], list(cat.errors)
    for p in cat.products:
        if p.category is not None:
            keep.append(p)
            continue
        err = RecordError(cat.source, 0, "category", f"product {p.id!r} has no category")
        if not skip:
            raise ValueError(f"{err}; pass --skip-bad (on_error='skip') to leave it out")
        errors.append(err)
    if not keep:
        raise ValueError(f"{cat.source}: no labelled products to train on")
    return Catalogue(keep, cat.source, cat.skipped + len(cat.products) - len(keep), errors)


@dataclass
class ReadStats:
    """What a streaming read has seen so far: records read and bad records skipped."""

    read: int = 0
    skipped: int = 0
    errors: list[RecordError] = field(default_factory=list)


def iter_catalogue(
    path: str | Path,
    columns: ColumnMap | str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    stats: ReadStats | None = None,
) -> Iterator[Product]:
    """Stream the products of a catalogue (CSV, TSV, JSONL, Parquet), one at a time.

    Memory does not grow with the file. Bad records raise :class:`RecordError` or, with
    ``on_error="skip"``, are counted in ``stats`` (its first 100 errors are kept).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"catalogue {p} does not exist or is not a file")
    cmap = _column_map(p, columns)
    stats = stats if stats is not None else ReadStats()
    for line, row in iter_rows(p):
        try:
            prod = parse_record(row, cmap, str(p), line)
        except RecordError as e:
            if on_error == "raise":
                raise
            stats.skipped += 1
            if len(stats.errors) < 100:
                stats.errors.append(e)
            continue
        stats.read += 1
        yield prod


def count_records(path: str | Path) -> int | None:
    """Rows in a catalogue without parsing them (for progress bars): Parquet metadata, or
    non-empty lines of a JSONL file; None for CSV (a quoted field may span lines)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return int(parquet_file(p).metadata.num_rows)
    if suffix in (".jsonl", ".ndjson"):
        with p.open("rb") as f:
            return sum(1 for line in f if line.strip())
    return None


def sample_labelled(products: Sequence[Product], limit: int | None, seed: int) -> list[Product]:
    """The labelled products, or a fixed random sample of ``limit`` of them."""
    import random

    labelled = [p for p in products if p.category is not None]
    if limit is None or limit >= len(labelled):
        return labelled
    return random.Random(seed).sample(labelled, limit)


def path_string(path: Sequence[str]) -> str:
    return PATH_SEP.join(path)
