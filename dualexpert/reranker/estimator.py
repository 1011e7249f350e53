"""``CategoryReranker``: a cross-encoder that scores (product, candidate category) pairs.

The second paper's method on the first paper's problem (issue 17, lever 1): a cross-encoder
reads the product text and one candidate's text together and scores how well they fit. It is
trained on the labelled catalogue, each product paired with its own leaf (label 1) and with
near-misses (label 0): the leaves an SVM over TF-IDF n-grams ranks highest for it when it was
*not* trained on it (out-of-fold, see :meth:`LexicalExpert.out_of_fold_topk`), so the negatives
are the confusions a model makes on unseen products, and they do not depend on any one
domain-expert run. Optional LLM rationales ("why this product belongs here and not in the
near-misses") train a decoder beside it (``aux="decoder"``; the relevance distiller's
machinery, L_cls + λ·L_aux); only the cross-encoder is kept.

scikit-learn habits: configuration in the constructor (unknown keys are errors), ``fit`` /
``predict_logits`` / ``save`` / ``load``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..data import Product
from ..estimator import StrictConfig, load_manifest, saved_folder
from ..taxonomy import Taxonomy

log = logging.getLogger(__name__)

FORMAT, FORMAT_VERSION = "category-reranker", 1
# Hugging Face fast tokenizers are not safe to call from several threads at once; a DualExpert's
# stage 2 may call the reranker from worker threads
_SCORE_LOCK = threading.Lock()
CROSS = "cross-encoder"


class RerankerConfig(StrictConfig):
    """Training configuration; unknown keys and wrong types are errors."""

    encoder: str = "minilm"
    representation: Literal["leaf", "path", "descriptive"] = "descriptive"
    negatives: int = 4  # near-miss leaves paired with each product
    max_products: int | None = 3000  # train on the hardest products only (None: all)
    folds: int = 3  # out-of-fold folds of the lexical model that finds them
    # "embedding" is not offered: its targets need a rationale for every pair
    aux: Literal["decoder", "none"] = "none"
    lam: float = 0.1
    # with aux: the first half of the first epoch trains the decoder alone (the relevance
    # distiller's warm-up); at one epoch that halves the encoder's training
    decoder_warmup: bool = True
    epochs: int = 1
    learning_rate: float = 5e-5
    head_lr_multiplier: float = 1.0
    batch_size: int = 32
    max_length: int = 64
    rationale_max_length: int = 64
    seed: int = 42
    logging_steps: int = 20


def pair_id(product_id: str, category_id: str) -> str:
    """The id of a (product, candidate) training pair, as rationale files key it."""
    return f"{product_id}#{category_id}"


class CategoryReranker:
    """Cross-encoder over (product text, candidate category text)."""

    def __init__(self, config: RerankerConfig | None = None, **overrides: Any) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = RerankerConfig.from_options("CategoryReranker", {**base, **overrides})
        self.distiller_: Any = None
        self.taxonomy: Taxonomy | None = None

    # ---- training -----------------------------------------------------------------------
    def training_pairs(self, products: Sequence[Product], taxonomy: Taxonomy) -> list[Any]:
        """The labelled pairs: each of the hardest products with its leaf (label 1) and its
        near-misses (label 0), as ``RelevancePair``s keyed by :func:`pair_id`."""
        from ..domain.lexical import LexicalExpert
        from ..relevance.data import RelevancePair

        cfg = self.config
        prods, gold = [], []
        for i, p in enumerate(products):
            if p.category is None:
                raise ValueError(f"product {p.id or i}: field 'category' is needed for training")
            prods.append(p if p.id else p.model_copy(update={"id": str(i)}))
            gold.append(taxonomy.by_path(p.category).id)
        log.info("finding near-miss leaves for %d products (%d folds)", len(prods), cfg.folds)
        near, margins = LexicalExpert(calibrate_folds=0).out_of_fold_topk(
            [p.text() for p in prods], gold, cfg.negatives + 1, folds=cfg.folds
        )
        keep = hardest(near, margins, gold, cfg.max_products)
        log.info("training on the %d hardest of %d products", len(keep), len(prods))
        prods, gold, near = ([xs[i] for i in keep] for xs in (prods, gold, near))
        pairs = []
        for p, g, cands in zip(prods, gold, near, strict=True):
            negs = [c for c in cands if c != g][: cfg.negatives]
            for c, label in [(g, 1)] + [(n, 0) for n in negs]:
                text = taxonomy.represent(c, cfg.representation)
                pairs.append(RelevancePair(id=pair_id(p.id, c), query=p.text(), title=text,
                                           label=label))  # fmt: skip
        return pairs

    def fit(
        self,
        products: Sequence[Product],
        taxonomy: Taxonomy,
        rationales: Mapping[str, str] | None = None,
        output_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> CategoryReranker:
        """Train on labelled products.

        Args:
            products: labelled products (``category`` = the leaf's path).
            taxonomy: the taxonomy their paths belong to.
            rationales: ``{pair id: rationale}`` for ``aux`` other than ``"none"``
                (:func:`pair_id`); pairs without one add no auxiliary loss.
            output_dir: checkpoint folder (resumable with ``resume=True``).
            resume: continue from the newest checkpoint in ``output_dir``.
            progress: show the trainer's progress bar.
        """
        from ..relevance.distill import RelevanceDistiller

        cfg = self.config
        pairs = self.training_pairs(products, taxonomy)
        if cfg.aux != "none":
            if not rationales:
                raise ValueError(f"aux={cfg.aux!r} needs rationales (pair id -> text)")
            covered = sum(p.id in rationales for p in pairs)
            if not covered:
                raise ValueError(
                    f"none of the {len(rationales)} rationales is keyed by a training pair's id "
                    "(product id#category id): were they written for these products and this "
                    "reranker's settings (dualexpert.reranker.rationales.rationale_requests)?"
                )
            log.info("%d of %d training pairs have a rationale", covered, len(pairs))
        self.distiller_ = RelevanceDistiller(
            encoder=cfg.encoder,
            aux=cfg.aux,
            lam=cfg.lam,
            decoder_warmup=cfg.decoder_warmup,
            epochs=cfg.epochs,
            learning_rate=cfg.learning_rate,
            head_lr_multiplier=cfg.head_lr_multiplier,
            batch_size=cfg.batch_size,
            max_length=cfg.max_length,
            rationale_max_length=cfg.rationale_max_length,
            prior="none",  # the relevance prior's features are for queries, not categories
            seed=cfg.seed,
            logging_steps=cfg.logging_steps,
        )
        log.info("training the reranker on %d pairs", len(pairs))
        self.distiller_.fit(pairs, rationales, output_dir, resume, progress, partial=True)
        self.taxonomy = taxonomy
        return self

    # ---- inference ----------------------------------------------------------------------
    def candidate_text(self, category_id: str) -> str:
        if self.taxonomy is None:
            raise RuntimeError("fit or load the reranker first")
        return self.taxonomy.represent(category_id, self.config.representation)

    def score(
        self, product_texts: Sequence[str], candidates: Sequence[Sequence[str]],
        batch_size: int = 64,
    ) -> list[np.ndarray]:  # fmt: skip
        """Logits for each product's candidate texts (one array per product)."""
        if self.distiller_ is None:
            raise RuntimeError("fit or load the reranker before scoring")
        flat = [(t, c) for t, cs in zip(product_texts, candidates, strict=True) for c in cs]
        with _SCORE_LOCK:
            logits = self.distiller_.score_texts(flat, batch_size)
        out, start = [], 0
        for cs in candidates:
            out.append(logits[start : start + len(cs)])
            start += len(cs)
        return out

    # ---- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """``cross-encoder/`` (a sentence-transformers ``CrossEncoder`` folder),
        ``taxonomy.json`` and the manifest."""
        from ..training import is_main_process

        if self.distiller_ is None or self.taxonomy is None:
            raise RuntimeError("nothing to save: fit first")
        if not is_main_process():  # under DDP one process writes the model
            return Path(folder)
        with saved_folder(Path(folder), FORMAT, FORMAT_VERSION,
                          config=self.config.model_dump()) as d:  # fmt: skip
            self.distiller_.save(d / CROSS)
            self.taxonomy.save(d / "taxonomy.json")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> CategoryReranker:
        from ..relevance.distill import RelevanceDistiller

        folder = Path(folder)
        meta = load_manifest(folder, FORMAT, FORMAT_VERSION, required=("taxonomy.json",))
        self = cls(**meta["config"])
        self.distiller_ = RelevanceDistiller.load(folder / CROSS)
        self.taxonomy = Taxonomy.load(folder / "taxonomy.json")
        return self


def hardest(
    near: Sequence[Sequence[str]], margins: np.ndarray, gold: Sequence[str], n: int | None
) -> list[int]:
    """Indices of the ``n`` products an unseen-data model finds hardest, in their order: its
    top choice wrong first, then the smallest gap between its top two margins. The reranker
    only sees products the domain expert is unsure of, so these are its distribution."""
    if n is None or n >= len(gold):
        return list(range(len(gold)))
    gap = margins[:, 0] - margins[:, 1] if margins.shape[1] > 1 else margins[:, 0]
    wrong = np.asarray([not cands or cands[0] != g for cands, g in zip(near, gold, strict=True)])
    order = np.lexsort((gap, ~wrong))  # wrong first, then by gap
    return sorted(int(i) for i in order[:n])


def log_softmax(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())
