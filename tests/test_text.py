import pytest

from dualexpert.text import trim_to_sentence


def test_trim_to_sentence():
    assert trim_to_sentence("  It fits.\n It is a drill bit for") == "It fits."
    assert trim_to_sentence("No full stop at all") == "No full stop at all"
    assert trim_to_sentence("Done? Yes! And then") == "Done? Yes!"
    assert trim_to_sentence("Whole sentence.") == "Whole sentence."
    assert trim_to_sentence("") == ""


TEXTS = [
    "Sterling silver angel charm, 925 stamped",
    "",
    "a",
    "  A  b\tc\n\nDD é ÉTÉ 12 x-1 ",
    "ß straße İstanbul naïve café",
    "… — !!",
    "x" * 40,
    "DeWalt DCD791D2 20V MAX XR drill/driver kit (2 batteries)",
    "to be or not to be, that is the question: to be",
]


@pytest.mark.parametrize("analyzer,ngrams", [("word", (1, 2)), ("char_wb", (2, 5))])
def test_sparse_tfidf_is_scikit_learns_transform(analyzer, ngrams):
    """The NumPy tf-idf a saved lexical model predicts with gives scikit-learn's rows: the
    same terms (tokeniser, n-grams, short words, unicode case) and the same values."""
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfVectorizer

    from dualexpert.text import SparseTfidf

    fitted = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True)
    fitted.fit(TEXTS[:6] + TEXTS[7:])  # one text's terms stay out of the vocabulary
    vocab = sorted(fitted.vocabulary_, key=fitted.vocabulary_.get)
    ref = fitted.transform(TEXTS).tocsr()
    ptr, idx, data = SparseTfidf(analyzer, ngrams, vocab, fitted.idf_).transform(TEXTS)
    mine = csr_matrix((data, idx, ptr), shape=ref.shape)
    assert (mine != 0).sum() == (ref != 0).sum()
    assert abs(mine - ref).max() < 1e-12
    assert ptr[2] == ptr[1]  # the empty text is an empty row


def test_analyzers_match_scikit_learn_terms():
    from sklearn.feature_extraction.text import CountVectorizer

    from dualexpert.text import char_wb_ngrams, word_ngrams

    for text in TEXTS:
        for lo, hi in ((1, 1), (1, 3), (2, 2)):
            ref = CountVectorizer(ngram_range=(lo, hi)).build_analyzer()(text)
            assert word_ngrams(text, lo, hi) == ref
        for lo, hi in ((2, 5), (1, 3), (3, 3)):
            ref = CountVectorizer(analyzer="char_wb", ngram_range=(lo, hi)).build_analyzer()(text)
            assert char_wb_ngrams(text, lo, hi) == ref
