"""The lexical expert: word and character TF-IDF n-grams with a linear SVM, saved without pickle.

It makes different errors from the fine-tuned encoder: it reads the whole text (the encoder reads
32 tokens), and it remembers rare surface forms (model numbers, brand names) of tail classes that
a few gradient steps do not. The domain expert fuses its margins with its own log-probabilities
(see :class:`dualexpert.domain.DomainExpert`, ``lexical_weight``).

Saved as ``lexical/``: ``vocab.json`` (the two vocabularies), ``lexical.safetensors`` (the idf
vectors and the SVM's coefficients as a sparse matrix with the smallest weights pruned, plus the
intercepts) and ``lexical.json`` (settings, classes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import fit_temperature
from ..text import SparseTfidf

log = logging.getLogger(__name__)

FORMAT = 1


#: the out-of-fold accuracy ``class_weight="auto"`` gives up for the balanced weighting, which
#: lifts macro F1: on MWPD with the breadcrumb and URL the two were 0.1 point apart and the
#: unbalanced SVM cost the fused expert 3 points of macro F1; on BigBasket balanced loses 2.5
#: points (BENCHMARKS.md, session 29)
BALANCED_TOLERANCE = 0.005


class LexicalExpert:
    """``fit(texts, labels)`` / ``decision_function(texts)`` / ``save`` / ``load``.

    ``keep``: the share of the SVM's coefficients kept at save time, largest magnitude first
    (the rest are zero); 1.0 keeps them all. ``calibrate_folds``: folds of the training data on
    which the margins' temperature is fitted (:attr:`temperature`; 0 = no calibration, T = 1).
    ``class_weight="balanced"`` weighs each class by its inverse frequency, which lifts the
    tail: on MWPD it added 2.6 points of lvl3 macro F1 to the fused expert; on BigBasket it cost
    1.2 points of accuracy (BENCHMARKS.md). ``"auto"`` (the default) fits both out of fold on
    the training data and keeps ``balanced`` unless it loses more than
    :data:`BALANCED_TOLERANCE` of out-of-fold accuracy (:attr:`selection_` holds both);
    ``None`` or ``"balanced"`` fix it.
    """

    def __init__(
        self,
        C: float = 0.5,
        word_features: int = 200_000,
        char_features: int = 300_000,
        keep: float = 0.02,
        calibrate_folds: int = 3,
        class_weight: str | None = "auto",
    ) -> None:
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.C = C
        self.word_features = word_features
        self.char_features = char_features
        self.keep = keep
        self.calibrate_folds = calibrate_folds
        if class_weight not in ("auto", "balanced", None):
            raise ValueError(f"class_weight must be auto, balanced or None, not {class_weight!r}")
        self.class_weight = class_weight
        self.selection_: dict[str, float] = {}
        self.temperature = 1.0
        self.classes_: list[str] = []
        self._vocab: dict[str, list[str]] = {}
        self._idf: dict[str, np.ndarray] = {}
        self._tfidf: list[SparseTfidf] = []
        # the SVM's coefficients, (n_features, n_classes), as CSR arrays (indptr, indices, data)
        self._coef: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._intercept: np.ndarray | None = None

    def _vectorizers(self) -> tuple[Any, Any]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        word = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, max_features=self.word_features, dtype=np.float32
        )
        char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 5),
            sublinear_tf=True,
            max_features=self.char_features,
            dtype=np.float32,
        )
        return word, char

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> LexicalExpert:
        from scipy.sparse import csr_matrix, hstack

        if len(texts) != len(labels) or not texts:
            raise ValueError("LexicalExpert.fit needs as many labels as texts, and some texts")
        word, char = self._vectorizers()
        X = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
        self._vocab = {
            "word": sorted(word.vocabulary_, key=word.vocabulary_.get),
            "char": sorted(char.vocabulary_, key=char.vocabulary_.get),
        }
        self._idf = {"word": word.idf_.astype(np.float32), "char": char.idf_.astype(np.float32)}
        self._build_tfidf()
        parts = None
        if self.class_weight == "auto":
            parts = self._choose_class_weight(X, np.asarray(labels))
        clf = self._svm().fit(X, list(labels))
        self.classes_ = [str(c) for c in clf.classes_]
        coef = np.asarray(clf.coef_, dtype=np.float32)
        intercept = np.asarray(clf.intercept_, dtype=np.float32)
        if len(self.classes_) == 2:  # sklearn keeps one row for two classes
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        if self.keep < 1:
            cut = np.quantile(np.abs(coef), 1 - self.keep)
            coef = np.where(np.abs(coef) >= cut, coef, 0.0).astype(np.float32)
        csr = csr_matrix(coef.T)
        self._coef = (csr.indptr.astype(np.int64), csr.indices.astype(np.int32), csr.data)
        self._intercept = intercept
        if self.calibrate_folds >= 2:
            if parts is None or len(parts) != self.calibrate_folds:
                parts = self._out_of_fold(X, np.asarray(labels), self.calibrate_folds)
            self.temperature = self._calibrated_temperature(parts, list(labels))
        return self

    def _choose_class_weight(self, X: Any, y: np.ndarray) -> list:
        """Fit both class weightings out of fold; keep ``balanced`` unless it loses more than
        :data:`BALANCED_TOLERANCE` of out-of-fold accuracy. Returns the kept one's folds
        (reused for calibration)."""
        folds = max(self.calibrate_folds, 2)
        parts_of = {}
        for name, weight in (("none", None), ("balanced", "balanced")):
            parts_of[name] = parts = self._out_of_fold(X, y, folds, weight)
            hits = sum(
                int(np.sum(np.asarray(classes)[m.argmax(axis=1)] == y[idx]))
                for m, classes, idx in parts
            )
            self.selection_[name] = hits / len(y)
        balanced_ok = self.selection_["balanced"] >= self.selection_["none"] - BALANCED_TOLERANCE
        best = "balanced" if balanced_ok else "none"
        best_parts = parts_of[best]
        self.class_weight = None if best == "none" else "balanced"
        log.info("lexical expert: class_weight=%s (out-of-fold accuracy %s)",
                 self.class_weight, self.selection_)  # fmt: skip
        return best_parts

    def _calibrated_temperature(self, parts: list, labels: list[str]) -> float:
        """The ``T`` whose ``softmax(T * margin)`` has the least log loss on out-of-fold
        margins ``parts`` (each fold scored by an SVM fitted on the others): the lexical expert
        as a calibrated probability, so that fusion needs no weight tuned on test data."""
        y = np.asarray(labels)
        pairs = []
        for margins, classes, test_idx in parts:
            col = {c: i for i, c in enumerate(classes)}
            target = np.asarray([col.get(c, -1) for c in y[test_idx]])
            pairs.append((margins[target >= 0], target[target >= 0]))
        t, loss = fit_temperature(pairs, upper=100.0)
        log.info("lexical expert: calibrated temperature %.3f (log loss %.4f)", t, loss)
        return t

    def _out_of_fold(
        self, X: Any, y: np.ndarray, folds: int, class_weight: str | None = "own"
    ) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
        """``(margins, classes, test indices)`` per fold, each fold scored by an SVM fitted on
        the others (the folds in parallel)."""
        from joblib import Parallel, delayed
        from sklearn.model_selection import StratifiedKFold

        from ..threads import available_cpus

        counts = {c: n for c, n in zip(*np.unique(y, return_counts=True), strict=True)}
        # classes too rare to stratify still take part, in whichever fold they land
        strat = np.asarray([c if counts[c] >= folds else "<rare>" for c in y])
        splitter = StratifiedKFold(folds, shuffle=True, random_state=0)

        def oof(train_idx: np.ndarray, test_idx: np.ndarray):
            clf = self._svm(class_weight).fit(X[train_idx], y[train_idx])
            margins = clf.decision_function(X[test_idx])
            if margins.ndim == 1:
                margins = np.stack([-margins, margins], axis=1)
            return margins, [str(c) for c in clf.classes_], test_idx

        return Parallel(n_jobs=min(folds, available_cpus()))(
            delayed(oof)(a, b) for a, b in splitter.split(np.zeros(len(y)), strat)
        )

    def out_of_fold_topk(
        self, texts: Sequence[str], labels: Sequence[str], k: int, folds: int = 3
    ) -> tuple[list[list[str]], np.ndarray]:
        """For each training text, the ``k`` classes with the largest margins of an SVM that
        did not see it (``folds``-fold cross-fitting with this expert's settings), and those
        margins (shape ``(n, k)``): the near-misses a model makes on unseen products, for hard
        negatives. Needs no fitted expert; the vocabularies are fitted on all texts (no labels
        involved)."""
        from scipy.sparse import hstack

        if len(texts) != len(labels) or not texts:
            raise ValueError("out_of_fold_topk needs as many labels as texts, and some texts")
        word, char = self._vectorizers()
        X = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
        out: list[list[str]] = [[] for _ in texts]
        values = np.zeros((len(texts), k), dtype=np.float32)
        weight = "balanced" if self.class_weight == "auto" else self.class_weight
        for margins, classes, test_idx in self._out_of_fold(X, np.asarray(labels), folds, weight):
            top = np.argsort(-margins, axis=1)[:, :k]
            values[test_idx, : top.shape[1]] = np.take_along_axis(margins, top, axis=1)
            for row, i in zip(top, test_idx, strict=True):
                out[int(i)] = [classes[j] for j in row]
        return out, values

    def _svm(self, class_weight: str | None = "own") -> Any:
        """A LinearSVC with this expert's settings (``class_weight="own"``: its own)."""
        from sklearn.svm import LinearSVC

        weight = self.class_weight if class_weight == "own" else class_weight
        if weight == "auto":
            raise RuntimeError("class_weight 'auto' is resolved in fit()")
        return LinearSVC(C=self.C, class_weight=weight, random_state=0)

    def _build_tfidf(self) -> None:
        self._tfidf = [
            SparseTfidf("word", (1, 2), self._vocab["word"], self._idf["word"]),
            SparseTfidf("char_wb", (2, 5), self._vocab["char"], self._idf["char"]),
        ]

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """SVM margins, shape ``(n_texts, n_classes)``, columns in ``classes_`` order.

        The tf-idf rows times the coefficients in NumPy (no scikit-learn or SciPy import: a
        saved model predicts without them)."""
        if self._coef is None or self._intercept is None:
            raise RuntimeError("this LexicalExpert is not fitted: call fit() or load() first")
        texts = list(texts)
        n, k = len(texts), len(self.classes_)
        c_ptr, c_idx, c_val = self._coef
        out = np.zeros(n * k, dtype=np.float64)
        offset = 0
        for tfidf in self._tfidf:
            ptr, feat, val = tfidf.transform(texts)
            rows = np.repeat(np.arange(n), np.diff(ptr))
            feat = feat + offset
            offset += len(tfidf.idf)
            # every (row, feature) entry meets the feature's nonzero coefficients
            starts, lens = c_ptr[feat], c_ptr[feat + 1] - c_ptr[feat]
            pos = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
            out += np.bincount(
                np.repeat(rows, lens) * k + c_idx[pos],
                weights=np.repeat(val, lens) * c_val[pos],
                minlength=n * k,
            )
        return out.reshape(n, k).astype(np.float32) + self._intercept

    # ---- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        if self._coef is None or self._intercept is None:
            raise RuntimeError("this LexicalExpert is not fitted")
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        (d / "vocab.json").write_text(json.dumps(self._vocab, ensure_ascii=False))
        indptr, indices, data = self._coef
        save_file(
            {
                "word_idf": self._idf["word"],
                "char_idf": self._idf["char"],
                "coef_data": data.astype(np.float32),
                "coef_indices": indices.astype(np.int32),
                "coef_indptr": indptr.astype(np.int64),
                "intercept": self._intercept.astype(np.float32),
            },
            str(d / "lexical.safetensors"),
        )
        meta = {
            "format": FORMAT,
            "C": self.C,
            "word_features": self.word_features,
            "char_features": self.char_features,
            "keep": self.keep,
            "calibrate_folds": self.calibrate_folds,
            "class_weight": self.class_weight,
            "class_weight_selection": self.selection_,
            "temperature": self.temperature,
            "classes": self.classes_,
            "n_features": len(indptr) - 1,
        }
        (d / "lexical.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        return d

    @classmethod
    def load(cls, folder: str | Path) -> LexicalExpert:
        from safetensors.numpy import load_file

        d = Path(folder)
        for name in ("lexical.json", "vocab.json", "lexical.safetensors"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: missing from the saved lexical expert")
        meta = json.loads((d / "lexical.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{d / 'lexical.json'}: unknown format {meta.get('format')!r}")
        self = cls(
            meta["C"],
            meta["word_features"],
            meta["char_features"],
            meta["keep"],
            meta.get("calibrate_folds", 0),
            meta.get("class_weight"),
        )
        self.temperature = float(meta.get("temperature", 1.0))
        self.selection_ = dict(meta.get("class_weight_selection") or {})
        self.classes_ = list(meta["classes"])
        vocab = json.loads((d / "vocab.json").read_text())
        t = load_file(str(d / "lexical.safetensors"))
        self._vocab = {"word": list(vocab["word"]), "char": list(vocab["char"])}
        self._idf = {"word": t["word_idf"], "char": t["char_idf"]}
        n = int(meta["n_features"])
        if len(vocab["word"]) + len(vocab["char"]) != n or any(
            len(self._vocab[k]) != len(self._idf[k]) for k in ("word", "char")
        ):
            raise ValueError(f"{d}: the vocabularies do not match the coefficients")
        indptr, indices = t["coef_indptr"].astype(np.int64), t["coef_indices"]
        if len(indptr) != n + 1 or (len(indices) and indices.max() >= len(self.classes_)):
            raise ValueError(f"{d}: the coefficients do not match the classes")
        self._coef = (indptr, indices, t["coef_data"])
        self._intercept = t["intercept"]
        self._build_tfidf()
        return self
