"""``RelevancePrior``: the cheap relevance score that a cross-encoder learns to correct.

A logistic regression over features that need no training of a neural model: the zero-shot
bi-encoder cosine of query and title (MiniLM by default) and lexical overlap (word and character
TF-IDF cosines, token Jaccard, the share of query tokens found in the title, whether the whole
query occurs in it). On Home Depot at 1,000 pairs this stack already beats each of its parts,
and a cross-encoder trained from scratch on so few pairs does not reach the bi-encoder; trained
as a residual (its logit added to the prior's, its head starting at zero) it starts where the
prior is instead of below it.

Saved as plain arrays and JSON (no pickle): ``prior.json``, ``prior.safetensors`` and, when the
cosine is a feature, the bi-encoder in ``bi_encoder/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..text import fixed_tfidf

FORMAT = "relevance-prior"
Feature = Literal["cosine", "lexical", "overlap"]
FEATURES = ("cosine", "lexical", "overlap")
TextPair = tuple[str, str]
_TOKEN = re.compile(r"[a-z0-9]+")
# (name, analyzer, n-gram range) of the TF-IDF cosines
_TFIDF = (("word", "word", (1, 1)), ("char", "char_wb", (2, 4)))


def prior_groups(prior: str) -> list[str]:
    """The feature groups of a ``prior`` option: "none" -> [], else a '+'-joined subset."""
    if prior == "none":
        return []
    groups = prior.split("+")
    if any(g not in FEATURES for g in groups) or len(set(groups)) < len(groups):
        raise ValueError(f"prior must be 'none' or a '+'-joined subset of {FEATURES}: {prior!r}")
    return groups


def _texts(pairs: Sequence[Any]) -> list[TextPair]:
    return [(p.query, p.title) if hasattr(p, "query") else (p[0], p[1]) for p in pairs]


class RelevancePrior:
    """Logistic regression on the bi-encoder cosine and lexical overlap of (query, title).

    Feature groups:

    * ``cosine``: the zero-shot bi-encoder cosine;
    * ``lexical``: word and character TF-IDF cosines, token Jaccard, the share of query tokens
      found in the title, whether the whole query occurs in it;
    * ``overlap``: the share of query tokens that match a title token on their first four
      letters (plurals, stems), whether the query's first and last tokens do (the last is most
      often the product noun), and the query's and the title's length in tokens. The lengths
      carry a query-level prior (long queries are more often judged not relevant), which helps
      pooled ROC-AUC but does not reorder the products of one query.

    Args:
        features: which feature groups to use (a non-empty subset of the three).
        encoder: the bi-encoder for the cosine (``minilm``, ``mpnet``, a folder or HF name).
        C: inverse regularisation strength of the logistic regression.
        batch_size: encoding batch size.
    """

    def __init__(
        self,
        features: Sequence[Feature] = FEATURES,
        encoder: str = "minilm",
        C: float = 1.0,
        batch_size: int = 64,
    ) -> None:
        bad = [f for f in features if f not in FEATURES]
        if bad or not features:
            raise ValueError(f"features must be a non-empty subset of {FEATURES}: {bad}")
        self.features = tuple(features)
        self.encoder, self.C, self.batch_size = encoder, C, batch_size
        self.bi_encoder_: Any = None
        self._tfidf: dict[str, tuple[Any, Any]] = {}
        self._vocab: dict[str, list[str]] = {}
        self._idf: dict[str, np.ndarray] = {}
        self.coef_: np.ndarray | None = None
        self.intercept_ = 0.0
        self.train_decision_: np.ndarray | None = None  # the training pairs' logits, from fit

    # ---- features -------------------------------------------------------------------------
    def _bi_encoder(self) -> Any:
        if self.bi_encoder_ is None:
            from sentence_transformers import SentenceTransformer

            from ..models import resolve_encoder

            self.bi_encoder_ = SentenceTransformer(resolve_encoder(self.encoder), device="cpu")
        return self.bi_encoder_

    def cosine(self, pairs: Sequence[Any]) -> np.ndarray:
        """Zero-shot cosine of query and title embeddings."""
        texts = _texts(pairs)
        enc = self._bi_encoder()
        kw = {"batch_size": self.batch_size, "normalize_embeddings": True}
        a = enc.encode([q for q, _ in texts], **kw)
        b = enc.encode([t for _, t in texts], **kw)
        return (a * b).sum(axis=1).astype(np.float64)

    def _lexical(self, texts: list[TextPair]) -> np.ndarray:
        from sklearn.preprocessing import normalize

        cols = []
        for name, _, _ in _TFIDF:
            counts, tfidf = self._tfidf[name]
            q = normalize(tfidf.transform(counts.transform([q for q, _ in texts])))
            t = normalize(tfidf.transform(counts.transform([t for _, t in texts])))
            cols.append(np.asarray(q.multiply(t).sum(axis=1)).ravel())
        jac, cover, whole = [], [], []
        for q, t in texts:
            a, b = set(_TOKEN.findall(q.lower())), set(_TOKEN.findall(t.lower()))
            jac.append(len(a & b) / max(1, len(a | b)))
            cover.append(len(a & b) / max(1, len(a)))
            whole.append(float(q.lower().strip() in t.lower()))
        return np.column_stack([*cols, jac, cover, whole])

    @staticmethod
    def _overlap(texts: list[TextPair]) -> np.ndarray:
        rows = []
        for q, t in texts:
            qt, tt = _TOKEN.findall(q.lower()), _TOKEN.findall(t.lower())
            hits = [float(any(w.startswith(x[:4]) for w in tt)) for x in qt]
            cover = sum(hits) / max(1, len(qt))
            first, last = (hits[0], hits[-1]) if hits else (0.0, 0.0)
            rows.append([cover, first, last, float(len(qt)), float(len(tt))])
        return np.asarray(rows, dtype=np.float64).reshape(len(texts), 5)

    def transform(self, pairs: Sequence[Any]) -> np.ndarray:
        """The feature matrix (one row per pair)."""
        texts = _texts(pairs)
        cols = []
        if "cosine" in self.features:
            cols.append(self.cosine(texts)[:, None])
        if "lexical" in self.features:
            cols.append(self._lexical(texts))
        if "overlap" in self.features:
            cols.append(self._overlap(texts))
        return np.hstack(cols)

    def _build_tfidf(self) -> None:
        for name, analyzer, ngrams in _TFIDF:
            vocab, idf = self._vocab[name], self._idf[name]
            self._tfidf[name] = fixed_tfidf(analyzer, ngrams, vocab, idf, dtype=np.float64)

    # ---- estimator ------------------------------------------------------------------------
    def fit(self, pairs: Sequence[Any], labels: Sequence[int] | None = None) -> RelevancePrior:
        """Fit the TF-IDF vocabularies on the pairs' text and the regression on their labels
        (``labels``, or each pair's ``label``)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        texts = _texts(pairs)
        y = list(labels) if labels is not None else [p.label for p in pairs]
        if len(y) != len(texts) or any(v is None for v in y):
            raise ValueError("every training pair needs a 0/1 label")
        if len(set(y)) < 2:
            raise ValueError("the training pairs need both labels (relevant and not relevant)")
        if "lexical" in self.features:
            corpus = [q for q, _ in texts] + [t for _, t in texts]
            for name, analyzer, ngrams in _TFIDF:
                vec = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True)
                vec.fit(corpus)
                self._vocab[name] = vec.get_feature_names_out().tolist()
                self._idf[name] = vec.idf_.astype(np.float32)
            self._build_tfidf()
        X = self.transform(texts)
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(X, y)
        self.coef_ = lr.coef_.ravel().astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        self.train_decision_ = X @ self.coef_ + self.intercept_
        return self

    def rescale(self, weight: float, bias: float = 0.0) -> RelevancePrior:
        """Fold an affine map into the regression: the logit becomes ``weight * logit + bias``
        (a stacking weight fitted on held-out pairs, saved with the prior)."""
        if self.coef_ is None:
            raise RuntimeError("fit or load the RelevancePrior first")
        self.coef_ = weight * self.coef_
        self.intercept_ = weight * self.intercept_ + bias
        return self

    def decision_function(self, pairs: Sequence[Any]) -> np.ndarray:
        """The prior's logit for each pair."""
        if self.coef_ is None:
            raise RuntimeError("fit or load the RelevancePrior first")
        if not len(pairs):
            return np.zeros(0)
        return self.transform(pairs) @ self.coef_ + self.intercept_

    def predict_proba(self, pairs: Sequence[Any]) -> np.ndarray:
        """Probability that each pair is relevant."""
        from scipy.special import expit

        return expit(self.decision_function(pairs))

    # ---- persistence ----------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        if self.coef_ is None:
            raise RuntimeError("nothing to save: fit the RelevancePrior first")
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "features": list(self.features),
            "C": self.C,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "vocab": self._vocab,
        }
        (d / "prior.json").write_text(json.dumps(meta, ensure_ascii=False))
        save_file({f"{k}_idf": v for k, v in self._idf.items()} or {"none": np.zeros(1)},
                  str(d / "prior.safetensors"))  # fmt: skip
        if "cosine" in self.features:
            self._bi_encoder().save(str(d / "bi_encoder"))
        return d

    @classmethod
    def load(cls, folder: str | Path, batch_size: int = 64) -> RelevancePrior:
        from safetensors.numpy import load_file

        d = Path(folder)
        if not (d / "prior.json").is_file():
            raise FileNotFoundError(f"{d / 'prior.json'}: missing from the saved relevance prior")
        meta = json.loads((d / "prior.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{d / 'prior.json'}: unknown format {meta.get('format')!r}")
        self = cls(meta["features"], str(d / "bi_encoder"), meta["C"], batch_size)
        self.coef_ = np.asarray(meta["coef"], dtype=np.float64)
        self.intercept_ = float(meta["intercept"])
        if "lexical" in self.features:
            arrays = load_file(str(d / "prior.safetensors"))
            self._vocab = {k: list(v) for k, v in meta["vocab"].items()}
            self._idf = {k: arrays[f"{k}_idf"] for k in self._vocab}
            self._build_tfidf()
        return self
