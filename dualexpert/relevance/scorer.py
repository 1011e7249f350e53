"""``RelevanceScorer``: the deployed model. A CrossEncoder folder, scored in batches, no LLM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import RelevancePair

PairLike = RelevancePair | tuple[str, str]


class RelevanceScorer:
    """Load an exported relevance model and score (query, title) pairs.

    Any sentence-transformers ``CrossEncoder`` folder with one output works, including those
    written by :meth:`RelevanceDistiller.save`.
    """

    def __init__(self, path: str | Path, batch_size: int = 64, device: str = "cpu") -> None:
        from sentence_transformers import CrossEncoder

        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"{self.path} is not a model folder (no config.json)")
        meta = self.path / "dualexpert_distill.json"
        max_length = json.loads(meta.read_text()).get("max_length") if meta.exists() else None
        self.model = CrossEncoder(str(self.path), device=device, max_length=max_length)
        self.batch_size = batch_size

    @staticmethod
    def _texts(pairs: Sequence[PairLike]) -> list[tuple[str, str]]:
        out = []
        for p in pairs:
            out.append((p.query, p.title) if isinstance(p, RelevancePair) else (p[0], p[1]))
        return out

    def predict_proba(self, pairs: Sequence[PairLike], show_progress: bool = False) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        return np.asarray(
            self.model.predict(
                self._texts(pairs),
                batch_size=self.batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
            ),
            dtype=np.float64,
        )

    def predict(self, pairs: Sequence[PairLike], threshold: float = 0.5) -> np.ndarray:
        return (self.predict_proba(pairs) >= threshold).astype(int)

    def score(self, query: str, title: str) -> float:
        return float(self.predict_proba([(query, title)])[0])

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.predict_proba(*args, **kwargs)
