"""Small text helpers shared by the LLM programs and the lexical models."""

from __future__ import annotations

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
