"""Small text helpers shared by the LLM programs and the lexical models."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any


def trim_to_sentence(text: str) -> str:
    """Whitespace-normalised; text cut by a token cap ends at its last full sentence."""
    text = " ".join(str(text).split())
    if text and text[-1] not in ".!?":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        if cut > 0:
            text = text[: cut + 1]
    return text


def fixed_tfidf(
    analyzer: str, ngrams: tuple[int, int], vocab: list[str], idf: Any, dtype: Any = None
) -> tuple:
    """A (counts, tf-idf) pair with a given vocabulary and idf: the same transform as a fitted
    ``TfidfVectorizer(sublinear_tf=True)``, built from plain arrays (how a saved one loads,
    without pickle). Counts are float32 unless ``dtype`` says otherwise."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

    counts = CountVectorizer(
        analyzer=analyzer,
        ngram_range=ngrams,
        vocabulary={t: i for i, t in enumerate(vocab)},
        dtype=dtype or np.float32,
    )
    tfidf = TfidfTransformer(sublinear_tf=True)
    tfidf.idf_ = np.asarray(idf, dtype=np.float64)
    return counts, tfidf


# scikit-learn's defaults, which the lexical expert was fitted with
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_RUNS_OF_SPACE = re.compile(r"\s\s+")


def word_ngrams(text: str, lo: int, hi: int) -> list[str]:
    """The terms ``TfidfVectorizer(analyzer="word", ngram_range=(lo, hi))`` reads: lower-cased
    tokens of two or more word characters, and their ``lo``..``hi``-grams joined by a space."""
    tokens = _TOKEN.findall(text.lower())
    out = list(tokens) if lo == 1 else []
    for n in range(max(lo, 2), min(hi, len(tokens)) + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def char_wb_ngrams(text: str, lo: int, hi: int) -> list[str]:
    """The terms of ``analyzer="char_wb"``: character n-grams inside each space-padded word (a
    word shorter than ``n`` counts once, whole)."""
    out: list[str] = []
    for w in _RUNS_OF_SPACE.sub(" ", text.lower()).split():
        w = f" {w} "
        for n in range(lo, hi + 1):
            if len(w) <= n:
                out.append(w)
                break
            out.extend(w[i : i + n] for i in range(len(w) - n + 1))
    return out


_ANALYZERS = {"word": word_ngrams, "char_wb": char_wb_ngrams}


class SparseTfidf:
    """A fitted ``TfidfVectorizer(sublinear_tf=True)`` (l2-normalised rows) rebuilt from its
    vocabulary and idf, in plain Python and NumPy: how a saved lexical model predicts without
    importing scikit-learn or SciPy. ``transform`` gives the rows as CSR arrays."""

    def __init__(self, analyzer: str, ngrams: tuple[int, int], vocab: list[str], idf: Any):
        import numpy as np

        if analyzer not in _ANALYZERS:
            raise ValueError(f"analyzer must be one of {sorted(_ANALYZERS)}, not {analyzer!r}")
        self.analyze = _ANALYZERS[analyzer]
        self.ngrams = ngrams
        self.index = {t: i for i, t in enumerate(vocab)}
        self.idf = np.asarray(idf, dtype=np.float64)

    def transform(self, texts: list[str]) -> tuple[Any, Any, Any]:
        """``(indptr, indices, data)`` of the tf-idf rows, one per text (float64)."""
        import numpy as np

        lo, hi = self.ngrams
        indptr, indices, counts = [0], [], []
        get = self.index.get
        for text in texts:
            row = Counter(map(get, self.analyze(text, lo, hi)))
            row.pop(None, None)
            indices.extend(row)
            counts.extend(row.values())
            indptr.append(len(indices))
        ptr = np.asarray(indptr, dtype=np.int64)
        idx = np.asarray(indices, dtype=np.int64)
        data = (np.log(np.asarray(counts, dtype=np.float64)) + 1.0) * self.idf[idx]
        rows = np.repeat(np.arange(len(texts)), np.diff(ptr))
        norms = np.sqrt(np.bincount(rows, weights=data**2, minlength=len(texts)))
        data /= np.where(norms > 0, norms, 1.0)[rows]
        return ptr, idx, data
