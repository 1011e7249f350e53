"""The labelled products in a FAISS index: the domain expert's nearest-neighbour expert.

For each class, a product's score is the cosine of its most similar labelled product of that
class among its ``k`` nearest, minus the row's best (classes with none among the ``k`` get the
``k``-th cosine). The domain expert fuses ``neighbour_weight * temperature * score`` into its
log-probabilities, as it fuses the lexical expert's margins
(:class:`dualexpert.domain.DomainExpert`).

It remembers near-duplicates and rare products that a few epochs of fine-tuning and a
regularised linear model smooth over, and it reads them with an encoder that was **not**
fine-tuned on the labels (the default ``minilm``), so its errors differ from the fine-tuned
encoder's: on MWPD validation it added about half a point of weighted F1 to the fused expert;
the fine-tuned encoder's own embeddings added a tenth of that (BENCHMARKS.md).

Labelled products can be added after training (:meth:`NeighbourIndex.add`): they count at once,
without retraining.

It also keeps each labelled product's title, so that :meth:`NeighbourIndex.examples` can show
the general expert, for each candidate category, the products of that category most like the
one being classified (``DualExpert``'s ``examples`` representation).

Saved as a folder: ``encoder/`` (the sentence-transformers model, so the folder is
self-contained), ``index.faiss``, ``labels.npy`` (row -> class number), ``titles.jsonl`` (row
-> title, one JSON string a line; absent in folders saved before titles were kept) and
``neighbours.json`` (settings, classes, temperature). No pickle is read.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "neighbour-index"
#: above this many labelled products the index is HNSW (approximate) instead of exact
HNSW_ABOVE = 1_000_000
#: labelled products embedded per step of a fit (and per file of its work folder)
CHUNK = 10_000


class NeighbourIndex:
    """``fit(texts, labels)`` / ``scores(texts)`` / ``add`` / ``save`` / ``load``.

    ``encoder``: a name :func:`dualexpert.models.resolve_encoder` knows or a local
    sentence-transformers folder; ``max_length``: its tokens per product; ``k``: neighbours
    read per product; ``calibrate``: labelled products (at most) on which the temperature is
    fitted leave-one-out (0: no calibration, temperature 1).
    """

    def __init__(
        self,
        encoder: str = "minilm",
        max_length: int = 64,
        k: int = 50,
        calibrate: int = 5000,
        batch_size: int = 64,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.encoder = encoder
        self.max_length = max_length
        self.k = k
        self.calibrate = calibrate
        self.batch_size = batch_size
        self.classes_: list[str] = []
        self.temperature = 1.0
        self._labels = np.zeros(0, dtype=np.int64)
        # row -> title; None for an index saved before titles were kept
        self._titles: list[str] | None = []
        # a loaded index's titles.jsonl, read on first use (an index of 10^8 products that is
        # only scored never holds its titles in memory)
        self._titles_file: tuple[Path, int] | None = None
        self._rows: dict[int, np.ndarray] | None = None  # class number -> rows, built on use
        self._index: Any = None
        self._model: Any = None
        self._embed_fn: Callable[[list[str]], np.ndarray] | None = None
        self._source: str | None = None  # a loaded index's own copy of the encoder

    # ---- embeddings -------------------------------------------------------------------------
    def _load_model(self, source: str) -> None:
        from sentence_transformers import SentenceTransformer

        from ..models import resolve_encoder

        path = source if Path(source).is_dir() else resolve_encoder(source)
        self._model = SentenceTransformer(path, device="cpu")
        self._model.max_seq_length = self.max_length

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, ``(len(texts), dim)`` float32."""
        if self._embed_fn is not None:
            return self._embed_fn(list(texts))
        if self._model is None:
            self._load_model(self._source or self.encoder)
        vecs = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    # ---- fitting ----------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        work_dir: str | Path | None = None,
        titles: Sequence[str] | None = None,
    ) -> NeighbourIndex:
        """Index ``texts`` under their ``labels`` and calibrate the temperature on them.

        ``work_dir``: where the embeddings are kept, :data:`CHUNK` texts a file, as they are
        computed; a fit killed midway and run again on the same folder embeds only the chunks
        that are missing (each file is named by a hash of its texts and the encoder).
        ``titles``: what :meth:`examples` shows of each product (default: its text)."""
        if len(texts) != len(labels) or not texts:
            raise ValueError("NeighbourIndex.fit needs as many labels as texts, and some texts")
        self.classes_ = sorted({str(y) for y in labels})
        self._index, self._labels, self._titles = None, np.zeros(0, dtype=np.int64), []
        self._titles_file = None
        vecs = self._embed_chunks(list(texts), Path(work_dir) if work_dir else None)
        self._append(vecs, labels, _titles_for(texts, titles))
        if self.calibrate > 0:
            self.temperature = self._calibrated_temperature(vecs)
        return self

    def _embed_chunks(self, texts: list[str], work_dir: Path | None) -> np.ndarray:
        import hashlib

        if work_dir is not None:
            work_dir.mkdir(parents=True, exist_ok=True)
        parts = []
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            key = "\n".join([self.encoder, str(self.max_length), *chunk])
            digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
            name = f"embeddings-{start // CHUNK:06d}-{digest}.npy"
            path = work_dir / name if work_dir is not None else None
            if path is not None and path.is_file():
                try:
                    vecs = np.load(path, allow_pickle=False)
                except (OSError, ValueError):  # damaged: embedded again below
                    vecs = np.zeros((0, 0), dtype=np.float32)
                if vecs.shape[0] == len(chunk):
                    parts.append(vecs)
                    continue
            parts.append(self.embed(chunk))
            if path is not None:  # written whole or not at all, by each process of a DDP run
                tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
                np.save(tmp, parts[-1])
                os.replace(tmp, path)
            done = min(start + CHUNK, len(texts))
            log.info("neighbour index: embedded %d of %d labelled products", done, len(texts))
        return np.concatenate(parts)

    def add(
        self, texts: Sequence[str], labels: Sequence[str], titles: Sequence[str] | None = None
    ) -> NeighbourIndex:
        """Add labelled products to a fitted index (their classes must be known ones); they
        count from the next :meth:`scores`. The temperature is kept."""
        self._check_fitted()
        if len(texts) != len(labels):
            raise ValueError("NeighbourIndex.add needs as many labels as texts")
        unknown = sorted({str(y) for y in labels} - set(self.classes_))
        if unknown:
            raise ValueError(f"labels {unknown[:5]} are not classes of this index")
        if texts:
            self._append(self.embed(texts), labels, _titles_for(texts, titles))
        return self

    def _append(self, vecs: np.ndarray, labels: Sequence[str], titles: list[str]) -> None:
        import faiss

        col = {c: i for i, c in enumerate(self.classes_)}
        if self._index is None:
            dim = vecs.shape[1]
            if len(vecs) > HNSW_ABOVE:
                self._index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            else:
                self._index = faiss.IndexFlatIP(dim)
        self._index.add(vecs)
        new = np.asarray([col[str(y)] for y in labels], dtype=np.int64)
        self._labels = np.concatenate([self._labels, new])
        if self._loaded_titles() is not None:  # an old index without titles stays without
            self._titles.extend(titles)
        self._rows = None

    def _calibrated_temperature(self, vecs: np.ndarray) -> float:
        """The ``T`` whose ``softmax(T * score)`` has the least log loss, each sampled labelled
        product scored by the others (itself left out)."""
        from ..calibration import fit_temperature

        rng = np.random.default_rng(0)
        n = len(vecs)
        rows = rng.choice(n, size=min(n, self.calibrate), replace=False)
        sims, ids = self._index.search(vecs[rows], min(self.k + 1, n))
        itself = ids == rows[:, None]
        ids[itself] = -1
        if ids.shape[1] > self.k:  # a row whose product is not among its hits keeps k of them
            ids[~itself.any(axis=1), -1] = -1
        t, loss = fit_temperature([(self._scores_of(sims, ids), self._labels[rows])], upper=200.0)
        log.info("neighbour index: calibrated temperature %.3f (log loss %.4f)", t, loss)
        return t

    # ---- scoring ----------------------------------------------------------------------------
    def _scores_of(self, sims: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Scores from search hits ``(sims, ids)``, ``(n, hits)``; an id of -1 is no hit. A class
        without a hit gets the row's lowest cosine."""
        ok = ids >= 0
        fill = np.where(ok, sims, np.inf).min(axis=1)
        fill[~ok.any(axis=1)] = 0.0
        out = np.repeat(fill[:, None], len(self.classes_), axis=1).astype(np.float32)
        r, c = np.nonzero(ok)
        np.maximum.at(out, (r, self._labels[ids[r, c]]), sims[r, c])
        return out - out.max(axis=1, keepdims=True)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), len(classes_))``: per class, the cosine to the nearest labelled
        product of that class among the ``k`` nearest, minus the row's best (0 for the best
        class, below 0 for the others)."""
        self._check_fitted()
        if not texts:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        sims, ids = self._index.search(self.embed(texts), min(self.k, len(self._labels)))
        return self._scores_of(sims, ids)

    @property
    def has_titles(self) -> bool:
        """Whether :meth:`examples` can answer (indexes saved before titles were kept cannot)."""
        return self._titles is not None or self._titles_file is not None

    def _loaded_titles(self) -> list[str] | None:
        """The titles, read from the loaded folder's file on first use."""
        if self._titles_file is not None:
            self._titles, self._titles_file = _read_titles(*self._titles_file), None
        return self._titles

    def examples(self, text: str, classes: Sequence[str], m: int = 2) -> list[list[str]]:
        """For each of ``classes``, the titles of its ``m`` labelled products nearest to
        ``text``, nearest first (fewer when it has fewer; none for a class not in the index).
        The search is restricted to the class's rows: exact on the flat index, approximate on
        the HNSW one (above :data:`HNSW_ABOVE` products)."""
        import faiss

        self._check_fitted()
        titles = self._loaded_titles()
        if titles is None:
            raise ValueError(
                "this neighbour index was saved before it kept product titles: rebuild it "
                "(DomainExpert.fit_neighbours with the labelled products) to show examples"
            )
        if self._rows is None:
            order = np.argsort(self._labels, kind="stable")
            bounds = np.searchsorted(self._labels[order], np.arange(len(self.classes_) + 1))
            self._rows = {c: order[bounds[c] : bounds[c + 1]] for c in range(len(self.classes_))}
        col = {c: i for i, c in enumerate(self.classes_)}
        vec = self.embed([text])
        hnsw = isinstance(self._index, faiss.IndexHNSW)
        out: list[list[str]] = []
        for c in classes:
            rows = self._rows.get(col.get(str(c), -1), np.zeros(0, dtype=np.int64))
            if m < 1 or not len(rows):
                out.append([])
                continue
            sel = faiss.IDSelectorBatch(rows)
            params = (
                faiss.SearchParametersHNSW(sel=sel) if hnsw else faiss.SearchParameters(sel=sel)
            )
            _, ids = self._index.search(vec, min(m, len(rows)), params=params)
            out.append([titles[i] for i in ids[0] if i >= 0])
        return out

    def __len__(self) -> int:
        return len(self._labels)

    def _check_fitted(self) -> None:
        if self._index is None:
            raise RuntimeError("this NeighbourIndex is not fitted: call fit() or load() first")

    # ---- persistence ------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the folder (the caller's manifest hashes its files)."""
        import faiss

        self._check_fitted()
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        if self._model is None:
            self._load_model(self._source or self.encoder)
        self._model.save(str(d / "encoder"))
        faiss.write_index(self._index, str(d / "index.faiss"))
        np.save(d / "labels.npy", self._labels)
        titles = self._loaded_titles()
        if titles is not None:
            with open(d / "titles.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in titles)
        meta = {
            "format": FORMAT,
            "encoder": self.encoder,
            "max_length": self.max_length,
            "k": self.k,
            "calibrate": self.calibrate,
            "batch_size": self.batch_size,
            "classes": self.classes_,
            "temperature": self.temperature,
        }
        (d / "neighbours.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return d

    @classmethod
    def load(
        cls, folder: str | Path, embed: Callable[[list[str]], np.ndarray] | None = None
    ) -> NeighbourIndex:
        """Load a folder written by :meth:`save`. ``embed``: another implementation of the
        same encoder (e.g. its ONNX export); by default the saved ``encoder/`` on torch, loaded
        on first use."""
        import faiss

        d = Path(folder)
        try:
            meta = json.loads((d / "neighbours.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{d / 'neighbours.json'} cannot be read ({e}): save again") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{d}: not a neighbour index")
        self = cls(
            encoder=meta["encoder"],
            max_length=int(meta["max_length"]),
            k=int(meta["k"]),
            calibrate=int(meta["calibrate"]),
            batch_size=int(meta["batch_size"]),
        )
        self.classes_ = [str(c) for c in meta["classes"]]
        self.temperature = float(meta["temperature"])
        self._index = faiss.read_index(str(d / "index.faiss"))
        self._labels = np.load(d / "labels.npy", allow_pickle=False).astype(np.int64)
        if self._index.ntotal != len(self._labels):
            raise ValueError(f"{d}: index.faiss and labels.npy disagree; save again")
        self._titles = None
        if (d / "titles.jsonl").is_file():
            self._titles_file = (d / "titles.jsonl", len(self._labels))
        if embed is not None:
            self._embed_fn = embed
        else:
            self._source = str(d / "encoder")  # the saved copy, not the package's
        return self


def _titles_for(texts: Sequence[str], titles: Sequence[str] | None) -> list[str]:
    """What :meth:`NeighbourIndex.examples` will show of each product: its title, or its text."""
    if titles is None:
        return [str(t) for t in texts]
    if len(titles) != len(texts):
        raise ValueError(f"{len(titles)} titles for {len(texts)} texts")
    return [str(t) for t in titles]


def _read_titles(path: Path, n: int) -> list[str]:
    """The ``n`` titles of a saved index."""
    titles: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                title = json.loads(line)
            except ValueError:
                title = None
            if not isinstance(title, str):
                raise ValueError(f"{path}, line {lineno}: not a JSON string; save again")
            titles.append(title)
    if len(titles) != n:
        raise ValueError(f"{path}: {len(titles)} titles for {n} products; save again")
    return titles
