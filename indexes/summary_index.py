"""LLM-written category summaries (paper 3.2.2) kept in a FAISS index.

* :func:`diverse_sample` picks the products a summary is written from: k-means over their
  embeddings (one product nearest each centroid) plus the most typical product.
* :class:`CategorySummariser` is the DSPy program that writes a definition of a category.
* :class:`SummaryIndex` stores the summaries with sentence-transformers embeddings in FAISS: build
  (resumable), save, load, search, and update one category at a time.

A folder holds ``summaries.jsonl``, ``index.faiss`` and ``meta.json``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import dspy
import numpy as np

from ..estimator import read_manifest, write_manifest
from ..journal import Journal, read_records
from ..signatures import SummariseCategory
from ..text import trim_to_sentence

FORMAT, FORMAT_VERSION = "summary-index", 1


def diverse_sample(embeddings: np.ndarray, n: int, seed: int = 0) -> list[int]:
    """Indices of up to ``n`` diverse rows: the most typical one, then k-means representatives."""
    m = len(embeddings)
    if m <= n:
        return list(range(m))
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    centre = x.mean(0)
    picked = [int(np.argmax(x @ centre))]
    km = faiss.Kmeans(
        x.shape[1], n - 1, niter=20, nredo=5, seed=seed, verbose=False, min_points_per_centroid=1
    )
    km.train(x)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, nearest = index.search(km.centroids, min(4, m))
    for row in nearest:
        for j in row:
            if int(j) not in picked:
                picked.append(int(j))
                break
    return picked[:n]


class CategorySummariser(dspy.Module):
    """``forward(category, path, examples)`` → ``Prediction(summary)``.

    With no examples (a category without training data) the summary is written from the name
    and the path alone.
    """

    def __init__(self, max_tokens: int | None = None) -> None:
        super().__init__()
        self.max_tokens = max_tokens  # a cap on the summary (None: the LM's own max_tokens)
        self.write = dspy.Predict(SummariseCategory)

    def forward(self, category: str, path: str, examples: Sequence[str] = ()) -> dspy.Prediction:
        shown = "\n".join(f"- {e[:160]}" for e in examples) or "(no sample products)"
        cfg = {"max_tokens": self.max_tokens} if self.max_tokens else {}
        pred = self.write(category=category, path=path, examples=shown, config=cfg)
        return dspy.Prediction(summary=trim_to_sentence(pred.summary))


class SummaryIndex:
    """Category summaries with their embeddings in a FAISS inner-product index."""

    def __init__(self, embedder: str = "minilm") -> None:
        self.embedder = embedder
        self.summaries: dict[str, str] = {}
        self._ids: list[str] = []  # row id -> category id
        self._index: Any = None
        self._model: Any = None
        self.built_at: str | None = None

    # ---- embeddings -------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from ..models import resolve_encoder

            self._model = SentenceTransformer(resolve_encoder(self.embedder), device="cpu")
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(list(texts), batch_size=64, normalize_embeddings=True),
            dtype=np.float32,
        )

    def _new_index(self, dim: int) -> Any:
        import faiss

        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    # ---- dict-like access -------------------------------------------------------------------
    def get(self, category_id: str, default: str | None = None) -> str | None:
        return self.summaries.get(category_id, default)

    def __contains__(self, category_id: object) -> bool:
        return category_id in self.summaries

    def __len__(self) -> int:
        return len(self.summaries)

    # ---- writing ----------------------------------------------------------------------------
    def update(self, category_id: str, summary: str) -> None:
        """Add or replace one category's summary and its vector."""
        vec = self.embed([summary])
        if self._index is None:
            self._index = self._new_index(vec.shape[1])
        if category_id in self.summaries:
            row = self._ids.index(category_id)
            self._index.remove_ids(np.array([row], dtype=np.int64))
        else:
            row = len(self._ids)
            self._ids.append(category_id)
        self._index.add_with_ids(vec, np.array([row], dtype=np.int64))
        self.summaries[category_id] = summary

    def build(
        self,
        taxonomy: Any,
        products: Iterable[Any] = (),
        summariser: Callable[..., Any] | None = None,
        n_examples: int = 8,
        categories: Sequence[str] | None = None,
        journal: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
        seed: int = 0,
    ) -> SummaryIndex:
        """Write a summary for each leaf (or each id in ``categories``) and index it.

        ``journal``: a JSONL file that records each summary as it is written; a rerun on the
        same journal skips the categories already done, so an interrupted build resumes.
        """
        summariser = summariser or CategorySummariser()
        by_cat: dict[str, list[str]] = defaultdict(list)
        for p in products:
            if p.category is not None:
                by_cat[taxonomy.by_path(p.category).id].append(p.text(300))
        todo = list(categories) if categories is not None else [c.id for c in taxonomy.leaves]
        log = Journal(journal) if journal else None
        done = {r["id"]: r["summary"] for r in log.records()} if log else {}
        for cid, s in done.items():
            if cid in todo:
                self.update(cid, s)
        for i, cid in enumerate(todo):
            if cid in done:
                continue
            texts = by_cat.get(cid, [])
            examples = (
                [texts[j] for j in diverse_sample(self.embed(texts), n_examples, seed)]
                if texts
                else []
            )
            pred = summariser(
                category=taxonomy.descriptive_name(cid),
                path=taxonomy.full_path(cid),
                examples=examples,
            )
            self.update(cid, pred.summary)
            if log:
                with log.open() as write:
                    write([{"id": cid, "summary": pred.summary}])
            if progress:
                progress(i + 1, len(todo))
        self.built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self

    # ---- reading ----------------------------------------------------------------------------
    def search(self, text: str, k: int = 5) -> list[tuple[str, float, str]]:
        """The ``k`` summaries nearest to ``text``: ``(category_id, cosine, summary)``."""
        if self._index is None or not self.summaries:
            return []
        scores, rows = self._index.search(self.embed([text]), min(k, len(self.summaries)))
        return [
            (self._ids[r], float(s), self.summaries[self._ids[r]])
            for s, r in zip(scores[0], rows[0], strict=True)
            if r >= 0
        ]

    # ---- persistence ------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        import faiss

        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        with (d / "summaries.jsonl").open("w", encoding="utf-8") as f:
            for row, cid in enumerate(self._ids):
                f.write(
                    json.dumps(
                        {"row": row, "id": cid, "summary": self.summaries[cid]}, ensure_ascii=False
                    )
                    + "\n"
                )
        if self._index is not None:
            faiss.write_index(self._index, str(d / "index.faiss"))
        meta = {
            "embedder": self.embedder,
            "dimension": self._index.d if self._index else None,
            "count": len(self.summaries),
            "built_at": self.built_at,
        }
        write_manifest(d, FORMAT, FORMAT_VERSION, name="meta.json", **meta)
        return d

    @classmethod
    def load(cls, folder: str | Path) -> SummaryIndex:
        import faiss

        d = Path(folder)
        meta = json.loads((d / "meta.json").read_text())
        if "format" in meta:  # indexes saved before 0.2 carry no format or versions
            meta = read_manifest(d, FORMAT, FORMAT_VERSION, name="meta.json")
        self = cls(embedder=meta["embedder"])
        self.built_at = meta.get("built_at")
        for rec in read_records(d / "summaries.jsonl"):
            self._ids.append(rec["id"])
            self.summaries[rec["id"]] = rec["summary"]
        if (d / "index.faiss").exists():
            self._index = faiss.read_index(str(d / "index.faiss"))
            if self._index.ntotal != len(self._ids) or self._index.d != meta["dimension"]:
                raise ValueError(f"{d}: index.faiss does not match summaries.jsonl / meta.json")
        return self
