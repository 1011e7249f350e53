"""A linear probe on the local LLM's hidden states: the "ceiling" baseline of paper 4.2.

The LLM reads a plain-text relevance question about the pair; the hidden state of its last
token (llama.cpp's last-token pooling, after the final norm) is the pair's feature vector, and a
logistic regression is trained on those vectors. This needs a local GGUF model (llama.cpp can
return hidden states; hosted APIs cannot).

Embedding is the slow part (one LLM forward pass per pair), so :meth:`HiddenStateProbe.embed`
can keep its vectors in a ``.npz`` cache keyed by pair id: an interrupted run resumes from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import RelevancePair

PROMPT = (
    "Search query: {query}\nProduct title: {title}\n"
    "Question: Is this product relevant to the search query? Answer yes or no.\nAnswer:"
)


class HiddenStateProbe:
    """``fit(pairs)`` / ``predict_proba(pairs)`` over an LLM's last-token hidden states."""

    def __init__(
        self,
        model: str | None = "qwen-1.5b",
        n_threads: int | None = None,
        C: float | None = None,
        cache: str | Path | None = None,
        checkpoint_every: int = 25,
    ) -> None:
        self.model = model or "qwen-1.5b"  # None: the default local LLM
        self.n_threads = n_threads
        self.C = C
        self.cache = Path(cache) if cache else None
        self.checkpoint_every = checkpoint_every
        self._llm: Any = None
        self._clf: Any = None
        self._vectors: dict[str, np.ndarray] = self._read_cache()

    def _read_cache(self) -> dict[str, np.ndarray]:
        if self.cache is None or not self.cache.exists():
            return {}
        with np.load(self.cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def _write_cache(self) -> None:
        if self.cache is None:
            return
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_name(self.cache.name + ".tmp.npz")
        np.savez(tmp, **self._vectors)
        tmp.replace(self.cache)  # atomic: a kill leaves the old cache or the new one

    @property
    def llama(self) -> Any:
        if self._llm is None:
            from llama_cpp import LLAMA_POOLING_TYPE_LAST, Llama

            from ..lm import llm_threads
            from ..models import resolve_llm

            threads = self.n_threads or llm_threads()
            self._llm = Llama(
                model_path=resolve_llm(self.model),
                embedding=True,
                pooling_type=LLAMA_POOLING_TYPE_LAST,
                n_ctx=1024,
                n_batch=1024,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        return self._llm

    def embed(self, pairs: Sequence[RelevancePair], progress: bool = False) -> np.ndarray:
        """One hidden-state vector per pair (cached by pair id when ``cache`` is set)."""
        todo = [p for p in pairs if p.id not in self._vectors]
        if todo:
            from tqdm.auto import tqdm

            for i, p in enumerate(tqdm(todo, desc="LLM hidden states", disable=not progress)):
                text = PROMPT.format(query=p.query, title=p.title)
                self._vectors[p.id] = np.asarray(self.llama.embed(text), dtype=np.float32)
                if (i + 1) % self.checkpoint_every == 0:
                    self._write_cache()
            self._write_cache()
        return np.stack([self._vectors[p.id] for p in pairs])

    def fit(self, pairs: Sequence[RelevancePair], progress: bool = False) -> HiddenStateProbe:
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = self.embed(pairs, progress)
        y = np.asarray([p.label for p in pairs])
        if len(set(y.tolist())) < 2:
            raise ValueError("the probe needs both relevant and irrelevant training pairs")
        lr = (
            LogisticRegressionCV(Cs=np.logspace(-4, 1, 6), cv=5, scoring="roc_auc", max_iter=2000)
            if self.C is None  # choose the regularisation by 5-fold CV on the training pairs
            else LogisticRegression(C=self.C, max_iter=2000)
        )
        self._clf = make_pipeline(StandardScaler(), lr).fit(x, y)
        return self

    @property
    def chosen_C(self) -> float | None:
        """The regularisation in use (chosen by cross-validation when ``C`` was None)."""
        if self._clf is None:
            return self.C
        lr = self._clf[-1]
        return float(lr.C_[0]) if hasattr(lr, "C_") else float(lr.C)

    def predict_proba(self, pairs: Sequence[RelevancePair], progress: bool = False) -> np.ndarray:
        """P(relevant) per pair."""
        if self._clf is None:
            raise RuntimeError("call fit() first")
        return self._clf.predict_proba(self.embed(pairs, progress))[:, 1]
