"""The domain expert (paper section 3.1): a fine-tuned encoder proposing top-K leaf categories.

Estimator habits: configuration in the constructor, ``fit`` / ``predict`` / ``predict_proba`` /
``predict_topk``, ``save`` / ``load`` (safetensors + JSON, no pickle).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from ..data import Product, as_products
from ..estimator import StrictConfig, load_manifest, saved_folder, verify_files
from ..models import resolve_encoder, sha256_file
from ..taxonomy import Taxonomy, UnknownCategoryError
from ..threads import available_cpus, machine_cpus
from ..training import (
    disk_full_as_oserror,
    is_main_process,
    resume_point,
    run_fingerprint,
    training_args,
    transformers_verbosity,
    world_size,
)
from .augment import augment
from .lexical import LexicalExpert
from .onnx_runtime import OnnxEncoder, StaleExportError, has_export

if TYPE_CHECKING:  # torch and transformers load on first use: runtime="onnx" needs neither
    import torch

    from ..indexes import NeighbourIndex
    from .model import EncoderClassifier

ProductLike = Product | str | dict
log = logging.getLogger(__name__)
#: classes of the teacher's distribution kept per training text (the rest of its mass is
#: dropped): memory stays linear in the products whatever the size of the taxonomy
TEACHER_TOP_K = 32
TEACHER_CACHE = "teacher-targets.npz"
LABEL_SUMMARY_TOKENS = 128  # a path and a two-to-four-sentence summary


@dataclass(frozen=True)
class Candidate:
    """One proposed leaf category with the domain expert's probability."""

    id: str
    path: tuple[str, ...]
    probability: float

    @property
    def label(self) -> str:
        return self.path[-1]


class DomainExpertConfig(StrictConfig):
    """Settings of a :class:`DomainExpert`; unknown keys and wrong types are errors."""

    encoder: str = "minilm"
    max_length: int = Field(32, ge=8)
    batch_size: int = Field(32, ge=1)
    epochs: float = Field(4.0, gt=0)
    learning_rate: float = Field(1e-4, gt=0)
    head_lr_multiplier: float = 20.0
    label_init: bool = True  # head starts at the label texts' embeddings
    # a summary index folder (`dualexpert summarize`): with label_init, each class's head row
    # starts at the embedding of "<full path>: <its LLM-written summary>" (read at
    # LABEL_SUMMARY_TOKENS tokens); classes without a summary start at their path alone
    label_summaries: str | None = None
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    dropout: float = 0.1
    seed: int = 42
    # label augmentation (3.1.1)
    label_augmentation: bool = True
    aug_ratio: float = 0.2
    aug_per_leaf: int = 2
    aug_p_mask: float = 0.5
    # phase 1: focal loss (eq. 1)
    focal: bool = True
    gamma: float = 2.0
    alpha_power: float = 0.5
    # phase 2: bootstrap loss (eq. 2-3)
    bootstrap: bool = True
    beta: float = 0.9
    gate: float = 0.6  # < 1: fraction of the training steps; >= 1: an absolute global step
    # trainer plumbing: a checkpoint every save_minutes and at each epoch's end, or every
    # save_steps steps when that is set
    save_steps: int | None = None
    save_minutes: float = 10.0
    logging_steps: int = 50
    eval_batch_size: int = Field(32, ge=1)  # fastest on 2 CPU cores (BENCHMARKS.md, throughput)
    quantize: bool = False  # int8 dynamic quantisation of the Linear layers for CPU inference
    # the lexical expert (TF-IDF + linear SVM), fused as a product of experts:
    # log p_encoder + lexical_weight * T * margin, T calibrated on the training data's folds
    lexical: bool = True
    lexical_weight: float = 1.0
    # the nearest-neighbour expert (indexes.NeighbourIndex): the real labelled products in a
    # FAISS index, embedded by an encoder not fine-tuned on the labels; fused as
    # + neighbour_weight * T * (per class: cosine of its nearest product - the row's best)
    neighbours: bool = True
    neighbour_weight: float = Field(1.0, ge=0)
    neighbour_encoder: str = "minilm"
    neighbour_max_length: int = Field(64, ge=8)
    neighbour_k: int = Field(50, ge=1)
    # post-hoc logit adjustment: the fused log-probabilities minus tau * log(the leaf's share of
    # the real training products); None: 1 when fit() was given synthetic products, else 0
    prior_adjustment: float | None = Field(default=None, ge=0)
    # products filed at an internal category (not a leaf): "class" makes each such category a
    # class of its own; "reject" refuses them (every label must then be a leaf)
    internal_nodes: Literal["class", "reject"] = "class"
    # knowledge distillation: a saved DomainExpert (e.g. one on mpnet, trained on the same
    # products) whose encoder's softened distribution the student learns beside the labels
    # (losses.TeacherLoss); None: the labels alone
    teacher: str | None = None
    teacher_weight: float = Field(0.5, ge=0, le=1)
    teacher_temperature: float = Field(2.0, gt=0)
    extra: dict[str, Any] = {}


def label_texts(taxonomy: Taxonomy, classes: Sequence[str], summaries: str | None) -> list[str]:
    """Each class's full path, followed by its summary from the summary index folder
    ``summaries`` (``dualexpert summarize``) when that has one.

    Raises:
        FileNotFoundError: ``summaries`` is no summary index.
        ValueError: it summarises categories that are not in ``taxonomy`` (another taxonomy's).
    """
    paths = [taxonomy.full_path(c) for c in classes]
    if summaries is None:
        return paths
    from ..indexes import SummaryIndex

    written = SummaryIndex.load(summaries).summaries
    unknown = sorted(c for c in written if c not in taxonomy)
    if unknown:
        raise ValueError(
            f"{summaries}: {len(unknown)} of its {len(written)} summaries name no category of "
            f"this taxonomy, e.g. {unknown[0]!r}; was it written for another taxonomy?"
        )
    missing = sum(c not in written for c in classes)
    if missing:
        log.info(
            "%d of %d classes have no summary: their path alone starts the head",
            missing,
            len(classes),
        )
    return [
        f"{p}: {written[c]}" if c in written else p for p, c in zip(paths, classes, strict=True)
    ]


class DomainExpert:
    """Fine-tuned encoder over the leaves of a taxonomy.

    >>> expert = DomainExpert(encoder="minilm", epochs=4)
    >>> expert.fit(catalogue.products)                          # doctest: +SKIP
    >>> expert.predict_topk(["Sterling silver angel charm"], k=5)  # doctest: +SKIP
    """

    def __init__(self, **config: Any):
        self.config = DomainExpertConfig.from_options("DomainExpert", config)
        self.taxonomy: Taxonomy | None = None
        self.classes_: list[str] = []
        self.model: EncoderClassifier | None = None
        self.tokenizer: Any = None
        self.onnx_: OnnxEncoder | None = None  # set by load(runtime="onnx")
        self.train_log: list[dict[str, Any]] = []
        self.lexical_: LexicalExpert | None = None
        self.neighbours_: NeighbourIndex | None = None
        self.class_counts_: list[int] | None = None  # real labelled products per class
        self.prior_adjustment_ = self.config.prior_adjustment or 0.0

    # ---- training -----------------------------------------------------------------------
    def _label_texts(self) -> list[str]:
        """Each class's label text for the head's start: its full path, and its summary when
        ``label_summaries`` has one."""
        assert self.taxonomy is not None
        return label_texts(self.taxonomy, self.classes_, self.config.label_summaries)

    def _classes(self, products: Sequence[Product]) -> list[str]:
        """The leaves, plus, with ``internal_nodes="class"``, every internal category that holds
        products of its own (real taxonomies file some products above the deepest level)."""
        assert self.taxonomy is not None
        leaves = [c.id for c in self.taxonomy.leaves]
        if self.config.internal_nodes != "class":
            return leaves
        held = set()
        for p in products:
            if p.category is not None and tuple(p.category) in self.taxonomy:
                cat = self.taxonomy.by_path(p.category)
                if not cat.is_leaf:
                    held.add(cat.id)
        if held:
            log.info("%d internal categories hold products and are classes too", len(held))
        return [c.id for c in self.taxonomy if c.is_leaf or c.id in held]

    def _labels_for(self, products: Sequence[Product]) -> list[int]:
        assert self.taxonomy is not None
        index = {c: i for i, c in enumerate(self.classes_)}
        out = []
        for p in products:
            if p.category is None:
                raise ValueError(f"product {p.id!r}: field 'category' is missing (needed to fit)")
            try:
                cat = self.taxonomy.by_path(p.category)
            except UnknownCategoryError as e:
                raise UnknownCategoryError(f"product {p.id!r}: field 'category': {e}") from None
            if cat.id not in index:
                raise ValueError(
                    f"product {p.id!r}: field 'category' {cat.id!r} is not a leaf category "
                    "(internal_nodes='reject'; 'class' makes such categories classes too)"
                )
            out.append(index[cat.id])
        return out

    def fit(
        self,
        products: Iterable[ProductLike],
        taxonomy: Taxonomy | None = None,
        output_dir: str | Path | None = None,
        resume: bool = True,
        progress: bool = True,
        synthetic: Iterable[ProductLike] = (),
    ) -> DomainExpert:
        """Fine-tune on labelled products (and fit the lexical expert, when configured).

        Args:
            products: labelled products (``Product``, dicts or anything :func:`as_product`
                takes); every category must be a leaf of the taxonomy.
            synthetic: extra labelled products (e.g. :mod:`dualexpert.synthetic`'s LLM-written
                ones for rare leaves), trained on but left out of the class prior that
                ``prior_adjustment`` takes out; their categories must be in the label space.
            taxonomy: the label space (default: the tree of the products' own paths).
            output_dir: the trainer's checkpoints (a temporary folder when None).
            resume: when ``output_dir`` already holds checkpoints, go on from the last one.
            progress: show the Trainer's progress bar.

        Returns:
            ``self``, fitted.
        """
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ..phased_trainer import TimedCheckpoints
        from .losses import BootstrapLoss, FocalLoss, TeacherLoss, TwoPhaseLoss, class_weights
        from .model import EncoderClassifier
        from .trainer import TextLabelDataset, TokenizingCollator, TwoPhaseTrainer

        cfg = self.config
        torch.manual_seed(cfg.seed)
        # affinity, cgroup quota, OMP_NUM_THREADS; shared by the processes of a DDP run
        torch.set_num_threads(max(1, min(available_cpus(), machine_cpus() // world_size())))
        prods = as_products(products)
        if not prods:
            raise ValueError("no products to fit on")
        self.taxonomy = taxonomy or Taxonomy.from_paths(
            [p.category for p in prods if p.category is not None]
        )
        self.classes_ = self._classes(prods)
        if len({p.category for p in prods}) < 2:
            raise ValueError(
                "the training products must cover at least 2 categories to learn to tell them "
                f"apart; they all are {prods[0].category!r}"
            )
        real_counts = Counter(self._labels_for(prods))
        self.class_counts_ = [real_counts.get(i, 0) for i in range(len(self.classes_))]
        real = prods
        extra = as_products(synthetic)
        tau = cfg.prior_adjustment
        self.prior_adjustment_ = (1.0 if extra else 0.0) if tau is None else tau
        prods = prods + extra
        labels = self._labels_for(prods)
        counts = Counter(labels)
        tmp = None
        if output_dir is None:
            tmp = tempfile.mkdtemp(prefix="dualexpert-train-")
            output_dir = tmp
        learned = cfg.model_dump(exclude=INFERENCE_ONLY)
        if cfg.teacher is not None:  # a teacher retrained in the same folder is another run
            learned["teacher_manifest"] = sha256_file(Path(cfg.teacher) / "dualexpert.json")
        head_texts = self._label_texts()
        # the summaries' text, not their folder, is what is learned (and a run without them
        # keeps the fingerprint it had before the setting existed)
        if learned.pop("label_summaries") is not None:
            learned["label_texts"] = head_texts
        rows = ((p.id, p.text(), p.category) for p in prods)
        fingerprint = run_fingerprint(learned, self.classes_, rows)
        ckpt = resume_point(output_dir, fingerprint, resume)
        self.lexical_ = None
        if cfg.lexical:
            self.lexical_ = self._fit_lexical(prods, labels, output_dir if resume else None)
        self.neighbours_ = None
        if cfg.neighbours:  # the real products only: synthetic ones cost it tail macro F1
            self.neighbours_ = self._fit_neighbours(real, output_dir if resume else None)
        if cfg.label_augmentation:
            synth = augment(
                prods, self.taxonomy, cfg.aug_ratio, cfg.aug_per_leaf, cfg.aug_p_mask, cfg.seed
            )
            prods = prods + synth
            labels = labels + self._labels_for(synth)

        path = resolve_encoder(cfg.encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path)
        self.model = EncoderClassifier(encoder, len(self.classes_), cfg.dropout)
        if cfg.label_init:
            self.model.init_head_from_labels(
                self.tokenizer,
                head_texts,
                max_length=32 if cfg.label_summaries is None else LABEL_SUMMARY_TOKENS,
            )

        # optimiser steps: under DDP each process takes batch_size rows of every step's batch
        steps_per_epoch = math.ceil(len(prods) / (cfg.batch_size * world_size()))
        total = math.ceil(steps_per_epoch * cfg.epochs)
        gate = int(cfg.gate * total) if cfg.gate < 1 else int(cfg.gate)
        alpha = class_weights(
            [counts.get(i, 0) for i in range(len(self.classes_))], cfg.alpha_power
        )
        loss_fn: TwoPhaseLoss | TeacherLoss = TwoPhaseLoss(
            FocalLoss(cfg.gamma, alpha) if cfg.focal else None,
            BootstrapLoss(cfg.beta) if cfg.bootstrap else None,
            gate,
        )
        targets = None
        if cfg.teacher is not None:
            cache = Path(output_dir) / TEACHER_CACHE if resume else None
            targets = self._teacher_targets([p.text() for p in prods], cache, fingerprint)
            loss_fn = TeacherLoss(loss_fn, cfg.teacher_weight, cfg.teacher_temperature)
        args = training_args(
            output_dir,
            cfg,
            progress,
            warmup_steps=int(cfg.warmup_ratio * total),
            lr_scheduler_type="linear",
        )
        trainer = TwoPhaseTrainer(
            model=self.model,
            args=args,
            train_dataset=TextLabelDataset([p.text() for p in prods], labels, targets),
            data_collator=TokenizingCollator(self.tokenizer, cfg.max_length),
            loss_fn=loss_fn,
            head_lr_multiplier=cfg.head_lr_multiplier,
            callbacks=[TimedCheckpoints(cfg.save_minutes)] if not cfg.save_steps else None,
        )
        if ckpt:
            log.info("resuming from %s", ckpt)
        with transformers_verbosity(), disk_full_as_oserror(output_dir):
            trainer.train(resume_from_checkpoint=ckpt)
        self.train_log = [dict(x) for x in trainer.state.log_history]
        self.model = trainer.model.cpu().eval()
        self.onnx_ = None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        return self

    def _teacher_targets(
        self, texts: list[str], cache: Path | None, fingerprint: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's top classes for each text and their probabilities at
        ``teacher_temperature`` (renormalised over the top :data:`TEACHER_TOP_K`). A killed run
        finds them in ``cache`` (written for the same run's fingerprint) instead of scoring the
        texts again."""
        cfg = self.config
        assert cfg.teacher is not None
        if cache is not None and cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fingerprint and len(z["idx"]) == len(texts):
                    log.info("reusing the teacher's targets in %s", cache)
                    return z["idx"], z["p"]
        teacher = DomainExpert.load(cfg.teacher, runtime="torch")
        where = {c: i for i, c in enumerate(teacher.classes_)}
        missing = [c for c in self.classes_ if c not in where]
        if missing:
            raise ValueError(
                f"teacher {cfg.teacher}: {len(missing)} classes of these products are not "
                f"among its classes (e.g. {missing[0]!r}); train it on the same products and "
                "taxonomy"
            )
        cols = [where[c] for c in self.classes_]  # its order may differ; extra classes dropped
        k = min(TEACHER_TOP_K, len(self.classes_))
        idx = np.zeros((len(texts), k), dtype=np.int64)
        p = np.zeros((len(texts), k), dtype=np.float32)
        log.info("scoring %d training texts with the teacher %s", len(texts), cfg.teacher)
        for start in range(0, len(texts), 4096):  # a chunk's full distribution at a time
            proba = teacher.encoder_proba(texts[start : start + 4096])[:, cols]
            proba /= np.maximum(proba.sum(axis=1, keepdims=True), 1e-30)
            top = np.argpartition(-proba, k - 1, axis=1)[:, :k]
            z = np.log(np.maximum(np.take_along_axis(proba, top, 1), 1e-30).astype(np.float64))
            z = z / cfg.teacher_temperature
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            idx[start : start + len(top)] = top
            p[start : start + len(top)] = e / e.sum(axis=1, keepdims=True)
        if cache is not None and is_main_process():
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, idx=idx, p=p, fingerprint=np.array(fingerprint))
            os.replace(tmp, cache)
        return idx, p

    # ---- inference ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if (self.model is None and self.onnx_ is None) or self.taxonomy is None:
            raise RuntimeError("this DomainExpert is not fitted: call fit() or load() first")

    def _fit_lexical(
        self, prods: Sequence[Product], labels: list[int], output_dir: str | Path | None
    ) -> LexicalExpert:
        """Fit the lexical expert, or reuse the one a killed run left in ``output_dir`` when it
        has the same label space (a resume then skips the minutes of its fit)."""
        cached = Path(output_dir) / "lexical" if output_dir is not None else None
        if cached is not None and (cached / "lexical.json").is_file():
            lex = LexicalExpert.load(cached)
            if set(lex.classes_) == {self.classes_[i] for i in labels}:
                log.info("reusing the lexical expert in %s", cached)
                return lex
        log.info("fitting the lexical expert on %d products", len(prods))
        lex = LexicalExpert().fit([p.text() for p in prods], [self.classes_[i] for i in labels])
        if cached is not None and is_main_process():
            lex.save(cached)
        return lex

    def _fit_neighbours(
        self, prods: Sequence[Product], output_dir: str | Path | None
    ) -> NeighbourIndex:
        """Build the neighbour index, or reuse the one a killed run left in ``output_dir`` when
        it holds as many products, the same classes and the same settings (the run's
        fingerprint, which resuming checks, covers the products themselves)."""
        from ..indexes import NeighbourIndex

        cfg = self.config
        cached = Path(output_dir) / "neighbours" if output_dir is not None else None
        ids = [self.classes_[i] for i in self._labels_for(prods)]
        if cached is not None and (cached / "neighbours.json").is_file():
            index = NeighbourIndex.load(cached)
            settings = (cfg.neighbour_encoder, cfg.neighbour_max_length, cfg.neighbour_k)
            if (
                len(index) == len(prods)
                and index.has_titles
                and index.classes_ == sorted(set(ids))
                and (index.encoder, index.max_length, index.k) == settings
            ):
                log.info("reusing the neighbour index in %s", cached)
                return index
        index = NeighbourIndex(cfg.neighbour_encoder, cfg.neighbour_max_length, cfg.neighbour_k)
        work = Path(output_dir) / "neighbour-embeddings" if output_dir is not None else None
        index.fit([p.text() for p in prods], ids, work_dir=work, titles=[p.title for p in prods])
        if cached is not None and is_main_process():
            index.save(cached)
        return index

    def fit_neighbours(self, products: Iterable[ProductLike]) -> DomainExpert:
        """(Re)build the neighbour index of a fitted model from labelled ``products`` (e.g.
        the training products plus newly labelled ones) without retraining the encoder; the
        settings are the ``neighbour_*`` ones of the configuration."""
        self._check_fitted()
        self.neighbours_ = self._fit_neighbours(as_products(products), None)
        self.config.neighbours = True
        return self

    def neighbour_scores(self, texts: Sequence[str]) -> np.ndarray | None:
        """The neighbour expert's scores in ``classes_`` order (None without one): 0 for the
        class of the nearest labelled product, the cosine below it for the others."""
        if self.neighbours_ is None:
            return None
        return self._in_class_order(self.neighbours_.scores(texts), self.neighbours_.classes_)

    def _in_class_order(self, raw: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """An expert's ``raw`` scores over its own ``classes`` in ``classes_`` order; a class
        it does not know gets the lowest score of the row."""
        col = {c: i for i, c in enumerate(classes)}
        out = np.repeat(raw.min(axis=1, keepdims=True), len(self.classes_), axis=1)
        have = [(j, col[c]) for j, c in enumerate(self.classes_) if c in col]
        if have:
            mine, theirs = map(list, zip(*have, strict=True))
            out[:, mine] = raw[:, theirs]
        return out

    def lexical_margins(self, texts: Sequence[str]) -> np.ndarray | None:
        """The lexical expert's SVM margins in ``classes_`` order (None without one); a leaf
        it never saw gets the lowest margin of the row."""
        if self.lexical_ is None:
            return None
        return self._in_class_order(self.lexical_.decision_function(texts), self.lexical_.classes_)

    def fuse(self, proba: np.ndarray, margins: np.ndarray | None, weight: float) -> np.ndarray:
        """``softmax(log p + weight * margins)``: the two experts as one distribution."""
        if margins is None or weight == 0:
            return proba
        # float64: the fused distribution is sharp, and float32 would round a third more of the
        # top-1 confidences to exactly 1.0 (66% against 31% on MWPD validation)
        z = np.log(np.maximum(proba.astype(np.float64), 1e-12)) + weight * margins
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(
        self, products: Iterable[ProductLike], batch_size: int | None = None, fuse: bool = True
    ) -> np.ndarray:
        """Probabilities over ``classes_``, shape ``(n_products, n_leaves)``.

        With a lexical expert (the default) they are the fused ones, then adjusted for the
        training prior when ``prior_adjustment_`` is above 0 (:meth:`adjust_for_prior`);
        ``fuse=False`` gives the encoder's alone.
        """
        prods = as_products(products)
        proba = self.encoder_proba(prods, batch_size)
        if not fuse:
            return proba
        return self.adjust_for_prior(self.fused_proba(proba, [p.text() for p in prods]))

    def fused_proba(self, proba: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The encoder's probabilities ``proba`` of ``texts`` fused with the lexical and the
        neighbour experts (those the model has), before the prior adjustment."""
        if self.lexical_ is not None:
            proba = self.fuse(proba, self.lexical_margins(texts), self.fusion_scale())
        if self.neighbours_ is not None:
            proba = self.fuse(proba, self.neighbour_scores(texts), self.neighbour_scale())
        return proba

    def adjust_for_prior(self, proba: np.ndarray, tau: float | None = None) -> np.ndarray:
        """``softmax(log proba - tau * log prior)``, the prior being each class's add-one
        smoothed share of the real training products (``tau``: ``prior_adjustment_`` by
        default). Post-hoc logit adjustment: it moves probability from the head to the tail.
        Unchanged for ``tau == 0`` or a model saved without its class counts."""
        tau = self.prior_adjustment_ if tau is None else tau
        if not tau or self.class_counts_ is None:
            return proba
        c = np.asarray(self.class_counts_, dtype=np.float64) + 1.0
        z = np.log(np.maximum(proba.astype(np.float64), 1e-300)) - tau * np.log(c / c.sum())
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def neighbour_scale(self) -> float:
        """The factor on the neighbour scores: ``neighbour_weight`` times the index's
        calibrated temperature."""
        temperature = self.neighbours_.temperature if self.neighbours_ is not None else 1.0
        return self.config.neighbour_weight * temperature

    def fusion_scale(self) -> float:
        """The factor on the lexical margins: ``lexical_weight`` times the lexical expert's
        calibrated temperature."""
        temperature = self.lexical_.temperature if self.lexical_ is not None else 1.0
        return self.config.lexical_weight * temperature

    def encoder_proba(
        self, products: Iterable[ProductLike], batch_size: int | None = None
    ) -> np.ndarray:
        """The fine-tuned encoder's probabilities over ``classes_`` (no fusion), on torch or,
        when loaded with ``runtime="onnx"``, on ONNX Runtime."""
        self._check_fitted()
        texts = [p.text() for p in as_products(products)]
        bs = batch_size or self.config.eval_batch_size
        if self.onnx_ is not None:
            return self.onnx_.proba(texts, bs, len(self.classes_))
        import torch

        assert self.model is not None
        self.model.eval()
        model = self._inference_model()
        with torch.inference_mode():
            return self._torch_proba(model, texts, bs)

    def _torch_proba(self, model: torch.nn.Module, texts: list[str], bs: int) -> np.ndarray:
        import torch

        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths per batch
        out = np.zeros((len(texts), len(self.classes_)), dtype=np.float32)
        for start in range(0, len(texts), bs):
            idx = order[start : start + bs]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=self.config.max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**enc)["logits"]
            out[idx] = torch.softmax(logits.float(), -1).numpy()
        return out

    def _inference_model(self) -> torch.nn.Module:
        """The model used for prediction: int8-quantised on CPU when ``quantize`` is set."""
        if not self.config.quantize:
            return self.model
        cached = getattr(self, "_quantized", None)
        if cached is None or cached[0] is not self.model:  # refit or reloaded since
            from .quantize import quantize_int8

            self._quantized = (self.model, quantize_int8(self.model))
        return self._quantized[1]

    def predict(self, products: Iterable[ProductLike]) -> list[str]:
        """The top-1 leaf category id for each product."""
        proba = self.predict_proba(products)
        return [self.classes_[i] for i in proba.argmax(1)]

    def predict_topk(
        self,
        products: Iterable[ProductLike],
        k: int = 10,
        batch_size: int | None = None,
        fuse: bool = True,
    ) -> list[list[Candidate]]:
        """The ``k`` most probable leaves per product, best first, with probabilities."""
        proba = self.predict_proba(products, batch_size, fuse=fuse)
        return self.topk_from_proba(proba, k)

    def topk_from_proba(self, proba: np.ndarray, k: int) -> list[list[Candidate]]:
        assert self.taxonomy is not None
        k = min(k, proba.shape[1])
        top = np.argsort(-proba, axis=1)[:, :k]
        return [
            [
                Candidate(self.classes_[j], self.taxonomy.get(self.classes_[j]).path, float(row[j]))
                for j in idx
            ]
            for row, idx in zip(proba, top, strict=True)
        ]

    # ---- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``model.safetensors``, the tokenizer files, ``taxonomy.json``, the lexical
        expert (``lexical/``) and, last, the manifest ``dualexpert.json`` (format and library
        version, configuration, classes, the encoder's architecture)."""
        self._check_fitted()
        if self.model is None:
            raise RuntimeError(
                "this DomainExpert was loaded with runtime='onnx' and holds no torch weights: "
                "load it with runtime='torch' to save it"
            )
        from safetensors.torch import save_file

        assert self.taxonomy is not None
        if not is_main_process():  # under DDP one process writes the model
            return Path(folder)
        manifest = dict(
            config=self.config.model_dump(),
            classes=self.classes_,
            class_counts=self.class_counts_,
            prior_adjustment=self.prior_adjustment_,
            encoder_config=self.model.encoder.config.to_dict(),
        )
        with saved_folder(Path(folder), FORMAT, FORMAT_VERSION, **manifest) as d:
            state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
            self.tokenizer.save_pretrained(d)
            self.taxonomy.save(d / "taxonomy.json")
            if self.lexical_ is not None:
                self.lexical_.save(d / "lexical")
            if self.neighbours_ is not None:
                self.neighbours_.save(d / "neighbours")
        return Path(folder)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        prior_adjustment: float | None = None,
        runtime: Runtime = "auto",
    ) -> DomainExpert:
        """Load a folder written by :meth:`save` (also one written before 0.2, whose manifest
        was ``config.json``; saving it again converts it). ``prior_adjustment``: the ``tau``
        to predict with instead of the one the model was saved with (0: none).

        ``runtime``: ``"torch"`` loads the weights into torch (needed to train on or save);
        ``"onnx"`` predicts with the folder's ONNX export (:mod:`.onnx_runtime`; ``dualexpert
        export-onnx``) and never imports torch or transformers; ``"auto"`` (the default) takes
        ONNX when the folder has a current export and onnxruntime is installed, else torch."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        d = Path(folder)
        onnx = runtime == "onnx" or (runtime == "auto" and has_export(d) and _has_onnxruntime())
        # the ONNX runtime reads neither the torch weights nor the export through the manifest
        # (the export checks its own graph's hash, and that it matches the weights' hash)
        skip = ("model.safetensors", "onnx/", "neighbours/encoder/") if onnx else ()
        meta = _legacy_meta(d / "config.json") if not (d / "dualexpert.json").exists() else None
        if meta is None:
            meta = load_manifest(d, FORMAT, FORMAT_VERSION, REQUIRED, skip=skip)
        else:  # a pre-0.2 folder lists no hashes: only that the parts exist
            verify_files(d, meta, REQUIRED)
        if not ((d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file()):
            raise FileNotFoundError(f"{d / 'tokenizer.json'} is missing: save the model again")
        config = dict(meta["config"])
        if prior_adjustment is not None:  # the config's tau wins over the saved one below
            config["prior_adjustment"] = prior_adjustment
        self = cls(**config)
        self.classes_ = list(meta["classes"])
        self.class_counts_ = meta.get("class_counts")  # absent in older folders: no adjustment
        if self.config.prior_adjustment is not None:
            self.prior_adjustment_ = self.config.prior_adjustment
        else:
            self.prior_adjustment_ = float(meta.get("prior_adjustment", 0.0))
        self.taxonomy = Taxonomy.load(d / "taxonomy.json")
        embed = None  # the neighbour index's encoder: its ONNX export, or torch when None
        if onnx:
            try:
                files = meta.get("files") or {}
                digest = files.get("model.safetensors")
                self.onnx_ = OnnxEncoder(d, self.config.max_length, weights_sha256=digest)
                if (d / "neighbours").is_dir():
                    theirs = files.get("neighbours/encoder/model.safetensors")
                    embed = self.onnx_.embedder(self.config.eval_batch_size, theirs).embed
            except StaleExportError as e:
                if runtime == "onnx":
                    raise
                log.warning("%s; predicting on torch", e)
                self.onnx_, onnx = None, False
        if not onnx:
            if skip:  # the weights (the encoder's, the neighbour index's) were not checked above
                files = meta.get("files") or {}
                unread = {
                    k: v
                    for k, v in files.items()
                    if k.startswith(skip) and not k.startswith("onnx/")
                }
                verify_files(d, {"files": unread})
            self.model, self.tokenizer = _torch_model(d, meta, len(self.classes_), self.config)
        if (d / "lexical").is_dir():
            self.lexical_ = LexicalExpert.load(d / "lexical")
        else:  # saved without one (or before it existed)
            self.config.lexical = False
        if (d / "neighbours").is_dir():
            from ..indexes import NeighbourIndex

            self.neighbours_ = NeighbourIndex.load(d / "neighbours", embed=embed)
        else:  # saved without one (or before it existed)
            self.config.neighbours = False
        return self


Runtime = Literal["auto", "torch", "onnx"]
RUNTIMES = ("auto", "torch", "onnx")


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _torch_model(d: Path, meta: dict[str, Any], n_classes: int, config: Any) -> tuple[Any, Any]:
    """The saved encoder and head in torch, and the tokenizer."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from .model import EncoderClassifier

    enc_cfg = dict(meta["encoder_config"])
    econf = AutoConfig.for_model(enc_cfg.pop("model_type"), **enc_cfg)
    model = EncoderClassifier(AutoModel.from_config(econf), n_classes, config.dropout)
    try:
        weights = load_file(str(d / "model.safetensors"))
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ValueError(
            f"{d / 'model.safetensors'} cannot be read ({e}): it is damaged or truncated; "
            "save or train the model again"
        ) from None
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{d}: weights do not match the model: {missing or unexpected}")
    return model.eval(), AutoTokenizer.from_pretrained(d)


FORMAT, FORMAT_VERSION = "domain-expert", 2
# settings that do not change what training learns (a resumed run may change them)
INFERENCE_ONLY = {
    "eval_batch_size",
    "prior_adjustment",
    "quantize",
    "lexical_weight",
    # the neighbour index is built beside the encoder's training, not by it
    "neighbours",
    "neighbour_weight",
    "neighbour_encoder",
    "neighbour_max_length",
    "neighbour_k",
    "save_steps",
    "save_minutes",
    "logging_steps",
}
REQUIRED = ("model.safetensors", "taxonomy.json")


def _legacy_meta(path: Path) -> dict[str, Any] | None:
    """The manifest of a folder saved before 0.2 (``config.json``), or None if it is not one."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("dualexpert") == "domain-expert" else None
