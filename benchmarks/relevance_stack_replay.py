"""Replay the stacking step of ``distill`` from saved checkpoints, at several ridge strengths.

A ``relevance.py --combine stack`` run keeps each seed's trained cross-encoder in
``OUT/ckpt/cross_encoder+prior-s<seed>``. This script rebuilds that run's split and held-out
queries, fits the prior on the training side (it is not refitted on all pairs here), and calls
``RelevanceDistiller._stack`` with each ridge strength, so the weights are chosen by the
library's own code. It prints test ROC-AUC per seed and ridge and writes
``OUT/stack_replay.json``.

    python benchmarks/relevance_stack_replay.py --train-size 1000 --seeds 0 1 2 \
        --out benchmarks/results/relevance-stack/n1000 --ridges 0 1 3 10 30
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from relevance import _load, parser


def main() -> None:
    ap = parser()
    ap.add_argument("--ridges", type=float, nargs="+", default=[0.0, 10.0])
    args = ap.parse_args()
    from safetensors.torch import load_model
    from sklearn.metrics import roc_auc_score
    from transformers import AutoTokenizer

    from dualexpert.models import resolve_encoder
    from dualexpert.relevance.data import split_by_query
    from dualexpert.relevance.distill import RelevanceDistiller
    from dualexpert.relevance.model import RationaleDistillModel
    from dualexpert.relevance.prior import RelevancePrior

    tr, te, _ = _load(args)
    y = [p.label for p in te]
    out: dict = {}
    for seed in args.seeds:
        ckpt_dir = Path(args.out, "ckpt", f"cross_encoder+prior-s{seed}")
        ckpts = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        if not ckpts:
            print(f"seed {seed}: no checkpoint in {ckpt_dir}")
            continue
        enc = resolve_encoder(args.encoder)
        model = RationaleDistillModel(enc, aux="none")
        load_model(model, str(ckpts[-1] / "model.safetensors"))
        fit, held = split_by_query(tr, 0.1, seed=f"holdout-{seed}")  # as distill holds out
        base = RelevanceDistiller(encoder=args.encoder, seed=seed)
        base.cross_, base.tokenizer = model.cross.eval(), AutoTokenizer.from_pretrained(enc)
        base.prior_, base.combine_ = RelevancePrior(encoder=args.encoder).fit(fit), "stack"
        row = {
            "prior": float(roc_auc_score(y, base.prior_.decision_function(te))),
            "cross": float(roc_auc_score(y, base._cross_logits([(p.query, p.title) for p in te]))),
        }
        for ridge in args.ridges:
            d = copy.deepcopy(base)
            b0, b1 = d._stack(held, ridge=ridge)
            d.prior_.rescale(b1, b0)
            row[f"ridge{ridge:g}"] = float(roc_auc_score(y, d.predict_logits(te)))
            row[f"ridge{ridge:g}_weight"] = d.correction_scale_
        out[str(seed)] = row
        print(seed, {k: round(v, 4) for k, v in row.items()}, flush=True)
    print(f"{'seed':<6}" + "".join(f"{k:>16}" for k in next(iter(out.values()), {})))
    for seed, row in out.items():
        print(f"{seed:<6}" + "".join(f"{v:>16.4f}" for v in row.values()))
    means = {k: float(np.mean([r[k] for r in out.values()])) for k in next(iter(out.values()), {})}
    print(f"{'mean':<6}" + "".join(f"{v:>16.4f}" for v in means.values()))
    Path(args.out, "stack_replay.json").write_text(
        json.dumps({"seeds": out, "mean": means}, indent=1)
    )


if __name__ == "__main__":
    main()
