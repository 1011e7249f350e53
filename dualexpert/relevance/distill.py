"""``RelevanceDistiller``: fit a cross-encoder with rationale distillation; export and score.

scikit-learn habits: configuration in the constructor, ``fit`` / ``predict`` /
``predict_proba``, ``save`` / ``load``. ``save`` exports only the cross-encoder (a
sentence-transformers ``CrossEncoder`` folder); the decoder is a training aid and is dropped.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..estimator import StrictConfig, load_manifest, saved_folder
from .data import RelevancePair, split_by_query

logger = logging.getLogger(__name__)
FORMAT, FORMAT_VERSION = "relevance-cross-encoder", 2
PRIOR = "prior"  # subfolder of a saved model whose cross-encoder corrects a RelevancePrior
WARM = "warm-start"  # subfolder of the checkpoint folder: the warm start's own checkpoints


RESIDUAL_HEAD_LR = 30.0  # the head's relative learning rate when it corrects a prior
PREFIX_BRIDGE_LR = 1e-3  # the bridge into a frozen pretrained decoder (SmolLM2) is new
MIN_HOLDOUT = 50  # fewer held-out pairs than this: the correction is kept as trained
# stack: a ridge penalty of STACK_RIDGE / n on the cross-encoder's standardised weight, so that
# ~100 held-out pairs cannot give it a large weight by chance (1K Home Depot pairs, one seed of
# three: weight 3.5 unpenalised and 0.6819 test ROC-AUC against the prior's 0.6951; with 10,
# 0.6980); negligible with thousands of held-out pairs
STACK_RIDGE = 10.0


class DistillConfig(StrictConfig):
    """Training configuration; unknown keys and wrong types are errors. Defaults follow the
    paper's Table 4 where they fit 1K pairs."""

    encoder: str = "minilm"
    # "tags": a token classifier learns which input words the rationale cites (.tags)
    aux: Literal["decoder", "embedding", "tags", "none"] = "decoder"
    decoder: str | None = None  # default: a BERT-style decoder from the encoder's weights
    embedder: str = "minilm"  # rationale embeddings for aux="embedding" (paper: BGE-M3)
    lam: float = 0.1
    aux_norm: bool = False  # divide L_aux by its first-batch value (loss balancing)
    decoder_warmup: bool = True
    frozen_fraction: float = 0.5  # of the first epoch: decoder alone, encoder frozen
    encoder_warmup_fraction: float = 0.3  # of all steps: linear encoder warm-up
    head_warmup_fraction: float = 0.1
    ignore_cls: bool = False
    # residual on a prior: the cross-encoder's logit corrects a logistic regression on feature
    # groups of RelevancePrior joined by "+" (cosine, lexical, overlap); "none": plain
    # (the default: on Home Depot at 1K pairs the prior alone gains 3.7 points of ROC-AUC over
    # the bi-encoder; a cross-encoder trained from scratch stays below it)
    prior: str = "cosine+lexical+overlap"
    # with the prior, 8 epochs on 1K pairs overfit the correction (-2 points)
    epochs: int = Field(3, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    # the classification head's learning rate, relative to the encoder's. None: 30 with a prior,
    # 1 without. With a prior the head starts at zero, and at the encoder's rate it stays near
    # zero (corrections of +-0.002 logits after 3 epochs at 500 pairs: the cross-encoder added
    # nothing); a 30x rate lets it learn (sweep 1/10/30/100/300 at 500 pairs in BENCHMARKS).
    head_lr_multiplier: float | None = None
    # with a prior: the classification head's initial weights. "zero": the untrained model is
    # the prior exactly, but the encoder gets no gradient until the head has moved; "normal":
    # the encoder's own random initialisation (std 0.02 for MiniLM)
    head_init: Literal["zero", "normal"] = "zero"
    # with a prior, how the cross-encoder and the prior are combined:
    # "stack" (the default): the cross-encoder learns alone, as without a prior, and the
    #   held-out queries fit logit = b0 + b1 * prior + b2 * cross-encoder (b1, b2 >= 0); on
    #   Home Depot level with "residual" up to 2K pairs, 0.713 against 0.707 at 4K (3 seeds),
    #   0.738 against 0.717 at 47K (BENCHMARKS);
    # "residual": the cross-encoder learns a correction of the prior's logit (an offset in
    #   training), scaled after training on the held-out queries.
    # With fewer than MIN_HOLDOUT held-out pairs, "stack" falls back to "residual".
    combine: Literal["stack", "residual"] = "stack"
    # with a prior: the share of training queries held out to weigh the cross-encoder (stack:
    # b0, b1, b2 above; residual: the correction times the a in [0, 1] that minimises their
    # log-loss), so the model does no worse than its prior on unseen queries (at 2K pairs and
    # 3 epochs the unscaled residual lost 1.5 points of ROC-AUC to the prior, BENCHMARKS); the
    # prior is then refitted on all pairs. 0: nothing held out, the residual kept as trained
    correction_holdout: float = 0.1
    # stack: before it learns from the labels, the cross-encoder learns to reproduce the prior's
    # probabilities on unlabelled pairs (soft targets; the pairs given to fit, else the training
    # pairs' queries and titles recombined), so it starts from a model that already ranks
    # (Home Depot, 3 seeds: the stack 0.6965 -> 0.7023 ROC-AUC at 1K pairs, 0.7128 -> 0.7230
    # at 4K; the cross-encoder alone 0.592 -> 0.694 at 1K). "none": a new head on the encoder
    warm_start: Literal["prior", "none"] = "prior"
    warm_start_pairs: int = Field(8000, ge=1)
    warm_start_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(64, ge=8)
    rationale_max_length: int = 64
    weight_decay: float = 0.0
    decoder_weight_decay: float = 0.001
    # the auxiliary head's learning rate. None: the encoder's for a trainable decoder, 1e-3 for
    # a frozen pretrained LM (decoder="smollm2"), where only a new bridge into it learns
    decoder_lr: float | None = None
    seed: int = 42
    save_steps: int | None = None  # None: a checkpoint every save_minutes and at epoch ends
    save_minutes: float = 10.0
    logging_steps: int = 20


def _rows(
    pairs: Sequence[RelevancePair], rationales: Mapping[str, str] | None, need: bool
) -> list[dict[str, Any]]:
    rows = []
    for p in pairs:
        if p.label is None:
            raise ValueError(f"pair {p.id}: field 'relevance' is needed for training")
        r = (rationales or {}).get(p.id)
        if need and not r:
            raise ValueError(f"pair {p.id}: no rationale (field 'rationale' of the rationale file)")
        rows.append({"query": p.query, "title": p.title, "label": p.label, "rationale": r})
    return rows


class RelevanceDistiller:
    """Cross-encoder relevance model trained with LLM rationales as an auxiliary task."""

    def __init__(self, config: DistillConfig | None = None, **overrides: Any) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = DistillConfig.from_options("RelevanceDistiller", {**base, **overrides})
        from .prior import prior_groups

        prior_groups(self.config.prior)  # a bad value fails here, not after an hour of work
        self.model: Any = None  # the cross-encoder + decoder while training
        self.cross_: Any = None  # the cross-encoder alone: what predicts and ships
        self.tokenizer: Any = None
        self.prior_: Any = None  # the RelevancePrior the cross-encoder corrects, if any
        # with a prior: "residual" (the cross-encoder corrects it) or "stack" (weighed together)
        self.combine_: str = "none"
        self.correction_scale_: float = 1.0  # the held-out queries' weight of the cross-encoder
        # what the held-out queries measured (pairs, log-loss and ROC-AUC of the prior alone and
        # of the model; residual: also the unscaled model's; stack: the cross-encoder alone's
        # ROC-AUC and the weights; before the prior was refitted on all pairs)
        self.holdout_: dict[str, float | int] = {}
        self.warm_start_: dict[str, Any] = {}  # the warm start's pairs, source and seconds
        self.log_history: list[dict[str, Any]] = []

    def fit(
        self,
        pairs: Sequence[RelevancePair],
        rationales: Mapping[str, str] | None = None,
        output_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        partial: bool = False,
        unlabelled: Sequence[Any] | None = None,
    ) -> RelevanceDistiller:
        """Train the cross-encoder (with the decoder or embedding head when ``aux`` asks).

        Args:
            pairs: labelled (query, title) pairs.
            rationales: ``{pair id: rationale}`` (needed unless ``aux="none"``).
            output_dir: checkpoint folder (a temporary one when None).
            resume: continue from the newest checkpoint in ``output_dir``.
            progress: show the Trainer's progress bar.
            partial: allow pairs without a rationale (they add no decoder loss); otherwise
                every pair needs one unless ``aux="none"``.
            unlabelled: pairs (``query`` and ``title``; labels ignored) for the warm start
                (``warm_start="prior"``); None: the training pairs recombined.

        Returns:
            ``self``, fitted.
        """
        from transformers import logging as hf_logging

        from ..training import transformers_verbosity

        with transformers_verbosity(hf_logging.ERROR):
            return self._fit(pairs, rationales, output_dir, resume, progress, partial, unlabelled)

    def _fit(
        self,
        pairs: Sequence[RelevancePair],
        rationales: Mapping[str, str] | None,
        output_dir: str | Path | None,
        resume: bool,
        progress: bool,
        partial: bool = False,
        unlabelled: Sequence[Any] | None = None,
    ) -> RelevanceDistiller:
        from transformers import AutoTokenizer, set_seed

        from ..models import resolve_decoder, resolve_encoder
        from .model import RationaleDistillModel, load_decoder_tokenizer
        from .prior import RelevancePrior, prior_groups

        cfg = self.config
        set_seed(cfg.seed)
        enc = resolve_encoder(cfg.encoder)
        all_pairs, (pairs, held_out) = pairs, self._hold_out(pairs)
        rows = _rows(pairs, rationales, need=cfg.aux != "none" and not partial)
        self.tokenizer = AutoTokenizer.from_pretrained(enc)
        rtok, emb_dim = None, None
        if cfg.aux == "decoder":
            rtok = load_decoder_tokenizer(resolve_decoder(cfg.decoder) if cfg.decoder else enc)
        elif cfg.aux == "embedding":
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(resolve_encoder(cfg.embedder), device="cpu")
            embs = st.encode([r["rationale"] for r in rows], batch_size=64, convert_to_numpy=True)
            for r, e in zip(rows, embs, strict=True):
                r["embedding"] = e.tolist()
            emb_dim = int(embs.shape[1])
        self.prior_, self.combine_ = None, "none"
        if cfg.prior != "none":
            self.prior_ = RelevancePrior(prior_groups(cfg.prior), encoder=enc).fit(pairs)
            self.combine_ = "stack" if cfg.combine == "stack" and held_out else "residual"
            if cfg.combine == "stack" and not held_out:
                logger.info("too few held-out pairs to weigh a separate cross-encoder: it "
                            "learns a correction of the prior instead")  # fmt: skip
        residual = self.combine_ == "residual"
        if residual:
            for r, z in zip(rows, self.prior_.train_decision_, strict=True):
                r["prior"] = float(z)
        self.model = RationaleDistillModel(
            enc,
            aux=cfg.aux,
            decoder=resolve_decoder(cfg.decoder) if cfg.decoder else None,
            embedding_dim=emb_dim,
            ignore_cls=cfg.ignore_cls,
            lam=cfg.lam,
            residual=residual,
            aux_norm=cfg.aux_norm,
            head_init=cfg.head_init,
        )
        tmp = None
        if output_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="dualexpert-distill-")
            output_dir = tmp.name
        self.warm_start_ = {}
        if self.combine_ == "stack" and cfg.warm_start == "prior":
            warm = self._warm_start(pairs, unlabelled, Path(output_dir) / WARM, resume, progress)
            self.model.cross.load_state_dict(warm.state_dict())
        frozen = 0.0
        if cfg.aux != "none" and cfg.decoder_warmup:
            frozen = cfg.frozen_fraction / cfg.epochs
        trainer = self._train(
            self.model,
            rows,
            output_dir,
            cfg.model_dump(exclude={"save_steps", "save_minutes", "logging_steps"}),
            resume,
            progress,
            rtok=rtok,
            frozen=frozen,
            head_lr_multiplier=cfg.head_lr_multiplier or (RESIDUAL_HEAD_LR if residual else 1.0),
        )
        self.log_history = list(trainer.state.log_history)
        self.model.eval()
        self.cross_ = self.model.cross
        if tmp is not None:
            tmp.cleanup()
        self.correction_scale_, self.holdout_ = 1.0, {}
        if held_out:
            if residual:
                self._scale_correction(held_out)
            else:
                b0, b1 = self._stack(held_out)
            # the prior then learns from every pair (a = 0 leaves exactly the full-data prior);
            # refitted in place, so its bi-encoder is not loaded twice
            self.prior_.fit(all_pairs)
            if not residual:  # its stacking weight and the bias, folded into the regression
                self.prior_.rescale(b1, b0)
        return self

    def _train(
        self,
        model: Any,
        rows: list[dict[str, Any]],
        output_dir: str | Path,
        learned: dict[str, Any],
        resume: bool,
        progress: bool,
        rtok: Any = None,
        frozen: float = 0.0,
        head_lr_multiplier: float = 1.0,
        epochs: int | None = None,
    ) -> Any:
        """Run the Trainer on ``rows`` (checkpoints in ``output_dir``, resumed when they belong
        to the same run: ``learned`` settings and data) and return it."""
        from ..phased_trainer import TimedCheckpoints
        from ..training import disk_full_as_oserror, resume_point, run_fingerprint, training_args
        from .model import PrefixLMDecoder
        from .trainer import DistillTrainer, PairCollator, PairDataset

        cfg = self.config
        extra = {"num_train_epochs": epochs} if epochs else {}
        args = training_args(
            output_dir, cfg, progress, save_total_limit=1, max_grad_norm=1.0, **extra
        )
        enc_warm = cfg.encoder_warmup_fraction if frozen else cfg.head_warmup_fraction
        trainer = DistillTrainer(
            model=model,
            args=args,
            train_dataset=PairDataset(rows),
            data_collator=PairCollator(
                self.tokenizer,
                cfg.max_length,
                rtok,
                cfg.rationale_max_length,
                tags=model.aux == "tags",
            ),
            schedule_fractions=(frozen, enc_warm, cfg.head_warmup_fraction),
            decoder_weight_decay=cfg.decoder_weight_decay,
            aux_lr=cfg.decoder_lr
            or (PREFIX_BRIDGE_LR if isinstance(model.decoder, PrefixLMDecoder) else None),
            head_lr_multiplier=head_lr_multiplier,
            callbacks=[TimedCheckpoints(cfg.save_minutes)] if not cfg.save_steps else None,
        )
        data = ((r["query"], r["title"], r["label"], r.get("rationale")) for r in rows)
        ckpt = resume_point(output_dir, run_fingerprint(learned, [], data), resume)
        with disk_full_as_oserror(output_dir):
            trainer.train(resume_from_checkpoint=ckpt)
        return trainer

    def _warm_start(
        self,
        pairs: Sequence[RelevancePair],
        unlabelled: Sequence[Any] | None,
        output_dir: Path,
        resume: bool,
        progress: bool,
    ) -> Any:
        """A cross-encoder trained to give the prior's probabilities (soft targets) on
        unlabelled pairs: a seeded sample of ``warm_start_pairs`` distinct ``unlabelled`` ones,
        else the training pairs recombined (:mod:`.warm_start`)."""
        import time

        from scipy.special import expit

        from ..models import resolve_encoder
        from .model import RationaleDistillModel
        from .warm_start import given_pairs, recombined_pairs

        cfg, t0 = self.config, time.perf_counter()
        n = cfg.warm_start_pairs
        if unlabelled is not None:
            texts, source = given_pairs(unlabelled, n, seed=cfg.seed), "given"
        else:
            texts = recombined_pairs(pairs, n, self.prior_._bi_encoder(), seed=cfg.seed)
            source = "recombined"
        if not texts:
            raise ValueError("warm start: no unlabelled pair has both a query and a title")
        z = self.prior_.decision_function(texts)
        rows = [
            {"query": q, "title": t, "label": float(y)}
            for (q, t), y in zip(texts, expit(z), strict=True)
        ]
        model = RationaleDistillModel(resolve_encoder(cfg.encoder), aux="none")
        learned = {
            "warm_start": cfg.model_dump(exclude={"save_steps", "save_minutes", "logging_steps"}),
        }
        epochs = cfg.warm_start_epochs
        self._train(model, rows, output_dir, learned, resume, progress, epochs=epochs)
        self.warm_start_ = {
            "pairs": len(rows),
            "source": source,
            "mean_target": float(np.mean([r["label"] for r in rows])),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        logger.info("warm start: %d %s pairs with the prior's probabilities as targets (%.0f s)",
                    len(rows), source, self.warm_start_["seconds"])  # fmt: skip
        return model.cross

    def _hold_out(
        self, pairs: Sequence[RelevancePair]
    ) -> tuple[Sequence[RelevancePair], list[RelevancePair]]:
        """Training pairs and held-out pairs (whole queries) for the correction's scale."""
        frac = self.config.correction_holdout
        if self.config.prior == "none" or frac <= 0:
            return pairs, []
        # its own salt: the pairs are often the train side of split_by_query with this seed,
        # where every query's bucket is above the test fraction
        train, held = split_by_query(pairs, frac, seed=f"holdout-{self.config.seed}")
        if len(held) < MIN_HOLDOUT or len({p.label for p in held}) < 2 or not train:
            logger.info(
                "correction kept as trained: %d held-out pairs (%d needed, both labels)",
                len(held),
                MIN_HOLDOUT,
            )
            return pairs, []
        return train, held

    def _scale_correction(self, held: Sequence[RelevancePair]) -> None:
        """Multiply the correction by the ``a`` in [0, 1] that minimises the held-out pairs'
        log-loss of ``prior + a * correction``; ``a`` is folded into the head's last layer, so
        the exported cross-encoder gives the scaled correction."""
        import torch
        from scipy.optimize import minimize_scalar
        from sklearn.metrics import roc_auc_score

        from .model import output_layer

        z = self.prior_.decision_function(held).astype(np.float64)
        c = self._cross_logits([(p.query, p.title) for p in held]).astype(np.float64)
        y = np.array([p.label for p in held], dtype=np.float64)

        def log_loss(a: float) -> float:
            t = z + a * c
            return float(np.mean(np.logaddexp(0.0, t) - y * t))

        a = float(minimize_scalar(log_loss, bounds=(0.0, 1.0), method="bounded").x)
        # the bounded search stops short of the ends; 0 (the prior alone) wins ties
        a = min((0.0, 1.0, a), key=log_loss)
        head = output_layer(self.cross_)
        with torch.no_grad():
            head.weight.mul_(a)
            head.bias.mul_(a)
        self.correction_scale_ = a
        self.holdout_ = {
            "pairs": len(held),
            "queries": len({p.query.strip().lower() for p in held}),
            "log_loss_prior": log_loss(0.0),
            "log_loss_unscaled": log_loss(1.0),
            "log_loss": log_loss(a),
            "roc_auc_prior": float(roc_auc_score(y, z)),
            "roc_auc_unscaled": float(roc_auc_score(y, z + c)),
            "roc_auc": float(roc_auc_score(y, z + a * c)),
        }
        logger.info(
            "correction scaled by %.3f on %d held-out pairs (log-loss %.4f -> %.4f)",
            a,
            len(held),
            log_loss(1.0),
            log_loss(a),
        )

    def _stack(
        self, held: Sequence[RelevancePair], ridge: float | None = None
    ) -> tuple[float, float]:
        """Fit ``b0 + b1 * prior + b2 * cross-encoder`` (``b1, b2 >= 0``) by log-loss on the
        held-out pairs, ``b2`` shrunk by a ridge penalty (``ridge``, default ``STACK_RIDGE``).
        ``b2`` is folded into the head's last layer (the exported cross-encoder gives
        ``b2 * logit``). Returns ``(b0, b1)`` for the prior, which is refitted first."""
        import torch
        from scipy.optimize import minimize
        from scipy.special import expit
        from sklearn.metrics import roc_auc_score

        from .model import output_layer

        z = self.prior_.decision_function(held).astype(np.float64)
        c = self._cross_logits([(p.query, p.title) for p in held]).astype(np.float64)
        y = np.array([p.label for p in held], dtype=np.float64)
        sd = float(c.std()) or 1.0
        X = np.column_stack([np.ones_like(z), z, c / sd])  # the weight of a standardised logit
        pen = np.array([0.0, 0.0, (STACK_RIDGE if ridge is None else ridge) / len(y)])

        def log_loss(b: np.ndarray) -> float:
            t = X @ b
            return float(np.mean(np.logaddexp(0.0, t) - y * t))

        def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
            grad = X.T @ (expit(X @ b) - y) / len(y) + 2 * pen * b
            return log_loss(b) + float(pen @ b**2), grad

        bounds = [(None, None), (0.0, None), (0.0, None)]
        b = minimize(loss, np.array([0.0, 1.0, 0.0]), jac=True, bounds=bounds, method="L-BFGS-B").x
        b0, b1, b2 = float(b[0]), float(b[1]), float(b[2]) / sd
        head = output_layer(self.cross_)
        with torch.no_grad():
            head.weight.mul_(b2)
            head.bias.mul_(b2)
        self.correction_scale_ = b2
        prior_only = minimize(loss, np.array([0.0, 1.0, 0.0]), jac=True, method="L-BFGS-B",
                              bounds=[(None, None), (0.0, None), (0.0, 0.0)]).x  # fmt: skip
        self.holdout_ = {
            "pairs": len(held),
            "queries": len({p.query.strip().lower() for p in held}),
            "log_loss_prior": log_loss(prior_only),
            "log_loss": log_loss(b),
            "roc_auc_prior": float(roc_auc_score(y, z)),
            "roc_auc_cross": float(roc_auc_score(y, c)),
            "roc_auc": float(roc_auc_score(y, X @ b)),
            "bias": b0,
            "prior_weight": b1,
            "cross_weight": b2,
        }
        logger.info(
            "stacked on %d held-out pairs: %.3f + %.3f * prior + %.3f * cross-encoder "
            "(ROC-AUC %.4f; prior %.4f, cross-encoder %.4f)",
            len(held), b0, b1, b2, self.holdout_["roc_auc"], self.holdout_["roc_auc_prior"],
            self.holdout_["roc_auc_cross"],
        )  # fmt: skip
        return b0, b1

    # -- inference ------------------------------------------------------------------------------
    def predict_proba(self, pairs: Sequence[RelevancePair], batch_size: int = 64) -> np.ndarray:
        """Probability that each pair is relevant."""
        from scipy.special import expit

        return expit(self.predict_logits(pairs, batch_size))

    def predict_logits(self, pairs: Sequence[RelevancePair], batch_size: int = 64) -> np.ndarray:
        """The cross-encoder's raw scores (logits) for (query, title) pairs."""
        return self.score_texts([(p.query, p.title) for p in pairs], batch_size)

    def score_texts(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """Logits for plain ``(query, title)`` text pairs, in batches of similar length (with
        a prior, its logit plus the cross-encoder's correction)."""
        out = self._cross_logits(pairs, batch_size)
        if self.prior_ is not None:
            out += self.prior_.decision_function(pairs).astype(np.float32)
        return out

    def _cross_logits(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """The cross-encoder's own logits (without the prior's)."""
        import torch

        if self.cross_ is None:
            raise RuntimeError("fit or load the distiller before predicting")
        out = np.zeros(len(pairs), dtype=np.float32)
        order = np.argsort([len(a) + len(b) for a, b in pairs], kind="stable")
        with torch.inference_mode():
            for i in range(0, len(pairs), batch_size):
                idx = order[i : i + batch_size]
                enc = self.tokenizer(
                    [pairs[j][0] for j in idx],
                    [pairs[j][1] for j in idx],
                    truncation=True,
                    max_length=self.config.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                out[idx] = self.cross_(**enc).logits.squeeze(-1).float().numpy()
        return out

    def predict(self, pairs: Sequence[RelevancePair], threshold: float = 0.5) -> np.ndarray:
        return (self.predict_proba(pairs) >= threshold).astype(int)

    def save(self, path: str | Path) -> Path:
        """Export the cross-encoder alone as a sentence-transformers ``CrossEncoder`` folder.

        With a prior, it is saved in ``prior/`` beside the cross-encoder: plain
        ``CrossEncoder(path)`` then gives only the correction, and :class:`RelevanceScorer`
        adds the two. The tokenizer's ``model_max_length`` is set to the training length, so plain
        ``CrossEncoder(path)`` truncates as :class:`RelevanceScorer` does. The manifest
        ``dualexpert.json`` records the configuration and versions.
        """
        from ..training import is_main_process

        if self.cross_ is None:
            raise RuntimeError("nothing to save: fit first")
        if not is_main_process():  # under DDP one process writes the model
            return Path(path)
        config = self.config.model_dump()
        with saved_folder(
            Path(path),
            FORMAT,
            FORMAT_VERSION,
            config=config,
            combine=self.combine_,
            correction_scale=self.correction_scale_,
            holdout=self.holdout_,
            warm_start=self.warm_start_,
        ) as d:
            self.cross_.save_pretrained(d, safe_serialization=True)
            self.tokenizer.model_max_length = self.config.max_length
            self.tokenizer.save_pretrained(d)
            if self.prior_ is not None:
                self.prior_.save(d / PRIOR)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> RelevanceDistiller:
        """A distiller whose cross-encoder is loaded from a folder written by :meth:`save`
        (ready to predict; the decoder is not saved, so it cannot resume training)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        meta = load_manifest(path, FORMAT, FORMAT_VERSION)
        self = cls(**{"prior": "none", **meta["config"]})  # folders from before the prior
        self.cross_ = AutoModelForSequenceClassification.from_pretrained(path).eval()
        self.correction_scale_ = float(meta.get("correction_scale", 1.0))
        default = "residual" if self.config.prior != "none" else "none"
        self.combine_ = str(meta.get("combine", default))  # folders from before stacking
        self.holdout_ = dict(meta.get("holdout", {}))
        self.warm_start_ = dict(meta.get("warm_start", {}))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.config.prior != "none":
            from .prior import RelevancePrior

            self.prior_ = RelevancePrior.load(path / PRIOR)
        return self
