"""Baselines a user would otherwise pick: TF-IDF + linear model, k-NN over sentence embeddings.

Both follow the domain expert's interface (``fit`` / ``predict_topk``) so that benchmarks and the
demo score them with the same code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..data import Product
from ..domain.expert import Candidate
from ..relevance.prior import RelevancePrior
from ..taxonomy import PATH_SEP


class TfidfLinearRanker:
    """Word (1-2) and character (2-5) TF-IDF n-grams with a linear SVM, one-vs-rest."""

    def __init__(self, C: float = 0.5, max_features: int = 300_000):
        self.C, self.max_features = C, max_features

    def _features(self, texts: Sequence[str], fit: bool = False):
        from scipy.sparse import hstack

        if fit:
            return hstack([self.word.fit_transform(texts), self.char.fit_transform(texts)]).tocsr()
        return hstack([self.word.transform(texts), self.char.transform(texts)]).tocsr()

    def fit(self, products: Sequence[Product]) -> TfidfLinearRanker:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        self.word = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, max_features=self.max_features
        )
        self.char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 5),
            sublinear_tf=True,
            max_features=self.max_features,
        )
        X = self._features([p.text() for p in products], fit=True)
        self.clf = LinearSVC(C=self.C).fit(X, [PATH_SEP.join(p.category) for p in products])
        return self

    def decision_function(self, products: Sequence[Product]) -> np.ndarray:
        return self.clf.decision_function(self._features([p.text() for p in products]))

    def predict_topk(self, products: Sequence[Product], k: int = 10) -> list[list[Candidate]]:
        """Top-k classes; ``probability`` is a softmax over the SVM margins (same order), so the
        ranker can stand in for a domain expert where probabilities are compared."""
        margins = self.decision_function(products)
        e = np.exp(margins - margins.max(axis=1, keepdims=True))
        scores = e / e.sum(axis=1, keepdims=True)
        top = np.argsort(-scores, axis=1)[:, :k]
        return [
            [
                Candidate(
                    str(self.clf.classes_[j]),
                    tuple(str(self.clf.classes_[j]).split(PATH_SEP)),
                    float(row[j]),
                )
                for j in idx
            ]
            for row, idx in zip(scores, top, strict=True)
        ]


class KnnEmbeddingRanker:
    """Cosine k-NN over sentence-transformers embeddings; classes scored by summed similarity."""

    def __init__(self, encoder: str = "minilm", neighbours: int = 25, batch_size: int = 128):
        self.encoder, self.neighbours, self.batch_size = encoder, neighbours, batch_size

    def _encode(self, products: Sequence[Product]) -> np.ndarray:
        return self.model.encode(
            [p.text() for p in products], batch_size=self.batch_size, normalize_embeddings=True
        )

    def fit(self, products: Sequence[Product]) -> KnnEmbeddingRanker:
        from sentence_transformers import SentenceTransformer

        from ..models import resolve_encoder

        self.model = SentenceTransformer(resolve_encoder(self.encoder), device="cpu")
        self.E = self._encode(products)
        self.labels = [p.category for p in products]
        self.prior = [c for c, _ in Counter(self.labels).most_common()]
        return self

    def predict_topk(self, products: Sequence[Product], k: int = 10) -> list[list[Candidate]]:
        sims = self._encode(products) @ self.E.T
        n = min(self.neighbours, sims.shape[1] - 1)
        out = []
        for row in sims:
            score: Counter = Counter()
            for j in np.argpartition(-row, n)[:n]:
                score[self.labels[j]] += float(row[j])
            ranked = [c for c, _ in score.most_common(k)]
            ranked += [c for c in self.prior if c not in score][: k - len(ranked)]
            out.append([Candidate(PATH_SEP.join(c), c, score.get(c, 0.0)) for c in ranked])
        return out


# ---- relevance baselines ----------------------------------------------------------------------
class LexicalRelevanceLR(RelevancePrior):
    """Logistic regression on lexical overlap features of (query, title): word and character
    TF-IDF cosines, token Jaccard, the share of query tokens found in the title, and whether the
    whole query occurs in the title (:class:`RelevancePrior` without the cosine)."""

    def __init__(self, C: float = 1.0):
        super().__init__(("lexical",), C=C)


class BiEncoderCosine:
    """Zero-shot cosine similarity between query and title embeddings (no training)."""

    def __init__(self, model: str = "minilm", batch_size: int = 64):
        self.prior = RelevancePrior(("cosine",), encoder=model, batch_size=batch_size)

    def predict_proba(self, pairs: Sequence) -> np.ndarray:
        return np.clip(self.prior.cosine(pairs), 0.0, 1.0)
