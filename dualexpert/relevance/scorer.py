"""``RelevanceScorer``: the deployed model. A CrossEncoder folder, scored in batches, no LLM."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..estimator import MANIFEST, load_manifest
from ..journal import Journal, chunks
from .data import RelevancePair
from .distill import FORMAT, FORMAT_VERSION, PRIOR

PairLike = RelevancePair | tuple[str, str]


class RelevanceScorer:
    """Load an exported relevance model and score (query, title) pairs.

    Any sentence-transformers ``CrossEncoder`` folder with one output works, including those
    written by :meth:`RelevanceDistiller.save`. A folder with a ``prior/`` (a stacked or
    residual model, the stacking weights folded into both parts) scores
    ``sigmoid(prior logit + cross-encoder logit)``; plain ``CrossEncoder`` on such a folder
    gives only the cross-encoder's weighted part.
    """

    def __init__(self, path: str | Path, batch_size: int = 64, device: str = "cpu") -> None:
        from sentence_transformers import CrossEncoder

        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"{self.path} is not a model folder (no config.json)")
        if (self.path / MANIFEST).is_file():
            # written by RelevanceDistiller.save: its parts are checked against their hashes,
            # as RelevanceDistiller.load does (a CrossEncoder folder from elsewhere has none)
            load_manifest(self.path, FORMAT, FORMAT_VERSION)
        max_length = _max_length(self.path)
        self.model = CrossEncoder(str(self.path), device=device, max_length=max_length)
        self.batch_size = batch_size
        self.prior: Any = None
        if (self.path / PRIOR).is_dir():
            from .prior import RelevancePrior

            self.prior = RelevancePrior.load(self.path / PRIOR, batch_size=batch_size)

    @staticmethod
    def _texts(pairs: Sequence[PairLike]) -> list[tuple[str, str]]:
        out = []
        for p in pairs:
            out.append((p.query, p.title) if isinstance(p, RelevancePair) else (p[0], p[1]))
        return out

    def predict_proba(self, pairs: Sequence[PairLike], show_progress: bool = False) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        texts = self._texts(pairs)
        kw: dict[str, Any] = {}
        if self.prior is not None:  # raw logits, to add to the prior's
            import torch

            kw["activation_fn"] = torch.nn.Identity()
        scores = np.asarray(
            self.model.predict(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                **kw,
            ),
            dtype=np.float64,
        )
        if self.prior is None:
            return scores
        from scipy.special import expit

        return expit(scores + self.prior.decision_function(texts))

    def predict(self, pairs: Sequence[PairLike], threshold: float = 0.5) -> np.ndarray:
        return (self.predict_proba(pairs) >= threshold).astype(int)

    def score(self, query: str, title: str) -> float:
        return float(self.predict_proba([(query, title)])[0])

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.predict_proba(*args, **kwargs)


def score_pairs(
    scorer: RelevanceScorer,
    pairs: Iterable[RelevancePair],
    out: str | Path,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Score every pair into a JSONL journal (``id``, ``query``, ``title``, ``probability``).

    Pairs already in ``out`` are skipped, so a killed run resumes losing nothing.

    Returns:
        ``pairs`` (written now), ``already_done`` and ``duplicate_ids``.
    """
    journal = Journal(out, fields=("probability",))
    written = 0
    with journal.open() as write:
        for chunk in chunks(journal.new(pairs), batch_size):
            rows = [
                {"id": p.id, "query": p.query, "title": p.title, "probability": float(s)}
                for p, s in zip(chunk, scorer.predict_proba(chunk), strict=True)
            ]
            written += write(rows)
            if progress is not None:
                progress(len(chunk))
    return {
        "pairs": written,
        "already_done": journal.already_done,
        "duplicate_ids": journal.duplicate_ids,
    }


def _max_length(folder: Path) -> int | None:
    """The training length recorded by :meth:`RelevanceDistiller.save` (the manifest, or the
    side file of folders saved before 0.2); None for other CrossEncoder folders."""
    for name, read in (
        ("dualexpert.json", lambda m: m.get("config", {}).get("max_length")),
        ("dualexpert_distill.json", lambda m: m.get("max_length")),
    ):
        f = folder / name
        if f.is_file():
            return read(json.loads(f.read_text(encoding="utf-8")))
    return None
