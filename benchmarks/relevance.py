"""Home Depot relevance benchmark: rationale distillation against the baselines a user would pick.

Prints a table and writes JSON. Each system's result is stored as soon as it is measured, so a
rerun with ``--resume`` continues where an interrupted run stopped.

    python benchmarks/relevance.py --rationales runs/relevance/rationales-train.jsonl \
        --train-size 1000 --seeds 0 1 2 --out benchmarks/results/relevance

Data: ``../shared/data/home-depot/pairs.csv``; label = relevance >= 2.5; split by query (20% of
queries held out, seed 0). The training set is the first ``--train-size`` pairs of the seeded
training sample that have a rationale. Trained systems vary the training seed; deterministic
ones (lexical LR, bi-encoder cosine, the LLM) get a bootstrap interval over the test pairs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "home-depot" / "pairs.csv"

PRIOR = "cosine+lexical+overlap"
VARIANTS = {
    "cross_encoder": {"aux": "none", "prior": "none"},
    "reasoning": {"aux": "decoder", "decoder_warmup": False, "prior": "none"},
    "reasoning+warmup": {"aux": "decoder", "decoder_warmup": True, "prior": "none"},
    "reasoning+warmup+ignore_cls": {
        "aux": "decoder",
        "decoder_warmup": True,
        "ignore_cls": True,
        "prior": "none",
    },
    "reasoning_embedding": {"aux": "embedding", "prior": "none"},
    # residual on the prior (logistic regression on bi-encoder cosine and lexical overlap)
    "cross_encoder+prior": {"aux": "none", "prior": PRIOR},
    "reasoning+warmup+prior": {"aux": "decoder", "decoder_warmup": True, "prior": PRIOR},
    # loss balancing: L_aux divided by its first-batch value
    "reasoning+warmup+prior+norm": {
        "aux": "decoder",
        "decoder_warmup": True,
        "prior": PRIOR,
        "aux_norm": True,
    },
    "reasoning_embedding+prior+norm": {"aux": "embedding", "prior": PRIOR, "aux_norm": True},
    "reasoning+warmup+norm": {
        "aux": "decoder",
        "decoder_warmup": True,
        "prior": "none",
        "aux_norm": True,
    },
    # a pretrained decoder: SmolLM2-135M, frozen, reading the encoder's states as a prefix
    "reasoning+warmup+smollm2": {
        "aux": "decoder",
        "decoder": "smollm2",
        "decoder_warmup": True,
        "prior": "none",
    },
    # the rationale as token tags: which input words it cites, for which label (no decoder)
    "tags+prior": {"aux": "tags", "decoder_warmup": False, "prior": PRIOR},
    "reasoning+warmup+prior+smollm2": {
        "aux": "decoder",
        "decoder": "smollm2",
        "decoder_warmup": True,
        "prior": PRIOR,
    },
}


def _load(args):
    from dualexpert.relevance import load_pairs, load_rationales, sample_pairs, split_by_query

    pairs = load_pairs(args.data, threshold=args.threshold)
    train, test = split_by_query(pairs, 0.2, seed=0)
    # no rationale file yet: the systems that need one are skipped
    have = args.rationales and Path(args.rationales).is_file()
    rat = load_rationales(args.rationales) if have else {}
    # the first N pairs of the seeded training sample; samples are nested, so the rationale run
    # (`dualexpert rationales --split train --sample 2000 --seed 0`) covers them in order
    tr = sample_pairs(train, args.train_size, seed=0)
    te = sample_pairs(test, args.test_size, seed=1)
    return tr, te, rat


def query_auc(pairs, prob) -> float:
    """Mean ROC-AUC within each query that has both labels: how well a system orders the
    products of one query, which query-level signals (such as the query's length) cannot
    change, unlike pooled ROC-AUC."""
    from collections import defaultdict

    from sklearn.metrics import roc_auc_score

    groups = defaultdict(list)
    for p, s in zip(pairs, prob, strict=True):
        groups[p.query].append((p.label, float(s)))
    aucs = [
        roc_auc_score([y for y, _ in g], [s for _, s in g])
        for g in groups.values()
        if len({y for y, _ in g}) == 2
    ]
    return float(sum(aucs) / len(aucs)) if aucs else float("nan")


def _store(out: Path, results: dict) -> None:
    """Write ``results``, first taking in what other runs on the same folder saved meanwhile.

    Seeds of one system can then run as parallel processes (``--seeds 0`` and ``--seeds 1``)
    on the same ``--out`` without one process overwriting the other's rows.
    """
    out.mkdir(parents=True, exist_ok=True)
    res_file = out / "results.json"
    with open(out / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if res_file.exists():
            _take_in(results, json.loads(res_file.read_text()))
        for entry in results.values():
            if isinstance(entry, dict) and entry.get("runs"):
                _summarise(entry)
        results.pop(PAIRED, None)  # worked out again from the runs, never carried over
        paired = _paired(results)
        if paired:
            results[PAIRED] = paired
        tmp = res_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(res_file)


def _summarise(entry: dict) -> None:
    """Mean and 95% t-interval of every metric over the seeds in ``entry["runs"]``.

    Done on every write, so that a process which started before another's seeds finished
    cannot leave a summary of fewer seeds than the file holds.
    """
    from dualexpert.evaluation.metrics import mean_ci

    runs = list(entry["runs"].values())
    keys = [k for k, v in runs[0].items() if k != "n" and isinstance(v, int | float)]
    stats = {k: mean_ci([r[k] for r in runs if k in r]) for k in keys}
    entry["mean"] = {k: v[0] for k, v in stats.items()}
    entry["ci95"] = {k: v[1] for k, v in stats.items()}
    entry["interval"] = f"t over {len(runs)} seeds"


#: the trained system every other trained system is compared with, seed by seed
BASELINE = "cross_encoder+prior"
PAIRED = f"paired_minus_{BASELINE}"


def _paired(results: dict, baseline: str = BASELINE) -> dict:
    """Each trained system minus ``baseline`` on the same training seeds, in points: the mean
    and 95% t-interval of the per-seed differences (the comparison bar 2 asks for), for the
    pooled ROC-AUC, the stacked cross-encoder alone and the within-query AUC."""
    from dualexpert.evaluation.metrics import mean_ci

    base = (results.get(baseline) or {}).get("runs") or {}
    out: dict = {}
    for name, entry in results.items():
        if name == baseline or not isinstance(entry, dict) or not entry.get("runs"):
            continue
        row = {}
        for metric in ("roc_auc", "cross_roc_auc", "query_auc"):
            by_seed = {
                seed: 100 * (run[metric] - base[seed][metric])
                for seed, run in entry["runs"].items()
                if metric in run and metric in base.get(seed, {})
            }
            if by_seed:
                mean, half = mean_ci(list(by_seed.values()))
                row[metric] = {"mean": mean, "ci95": half, "by_seed": by_seed}
        if row:
            out[name] = row
    return out


def _take_in(results: dict, saved: dict) -> None:
    """Add the systems and per-seed runs in ``saved`` that ``results`` lacks."""
    for name, entry in saved.items():
        if name not in results:
            results[name] = entry
        elif isinstance(entry, dict) and "runs" in entry and "runs" in results[name]:
            for seed, run in entry["runs"].items():
                results[name]["runs"].setdefault(seed, run)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--rationales", default="runs/relevance/rationales-train.jsonl")
    ap.add_argument("--threshold", type=float, default=2.5)
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--llm-test-size", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--systems", nargs="+", default=["lexical_lr", "biencoder", "prior", *VARIANTS])
    ap.add_argument("--ablation-seeds", type=int, nargs="+", default=None)
    ap.add_argument("--llm", default=None, help="LLM for direct judging (default qwen-1.5b)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument(
        "--head-lr-mult", type=float, default=None, help="override the head's learning-rate ratio"
    )
    ap.add_argument(
        "--combine",
        choices=["stack", "residual"],
        default=None,
        help="override how the cross-encoder and the prior combine (default: distill's)",
    )
    ap.add_argument(
        "--head-init",
        choices=["zero", "normal"],
        default=None,
        help="override the residual head's initialisation",
    )
    ap.add_argument(
        "--warm-start",
        choices=["prior", "none"],
        default=None,
        help="override the stacked cross-encoder's warm start (default: distill's)",
    )
    ap.add_argument(
        "--unlabelled",
        choices=["recombined", "train"],
        default="recombined",
        help="the warm start's unlabelled pairs: the training sample recombined (distill's "
        "default) or pairs of the whole training side of the split, labels dropped",
    )
    ap.add_argument(
        "--lam",
        type=float,
        default=None,
        help="override lambda (the weight of L_aux); results are stored as <system>@lam<value>",
    )
    ap.add_argument("--out", default="benchmarks/results/relevance")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--table", nargs="+", default=None, help="only print the table of these results.json"
    )
    return ap


def main() -> None:
    args = parser().parse_args()
    if args.table:
        merged: dict = {}
        for f in args.table:
            merged.update(json.loads(Path(f).read_text()))
        merged[PAIRED] = _paired(merged)  # files written before the comparison was stored
        print_table(merged)
        return
    print_table(run(args))


def run(args: argparse.Namespace) -> dict:
    """Measure ``args.systems`` at ``args.train_size`` pairs; returns the results dict (also
    stored in ``args.out``/results.json as each system finishes)."""
    if not Path(args.data).exists():
        raise SystemExit(f"data not found: {args.data} (see ../shared/data/README.md)")

    import numpy as np

    from dualexpert.evaluation.baselines import BiEncoderCosine, LexicalRelevanceLR
    from dualexpert.evaluation.metrics import binary_report, bootstrap_ci, paired_bootstrap_diff
    from dualexpert.relevance.distill import RelevanceDistiller
    from dualexpert.relevance.prior import RelevancePrior

    out = Path(args.out)
    res_file = out / "results.json"
    results = json.loads(res_file.read_text()) if args.resume and res_file.exists() else {}
    tr, te, rat = _load(args)
    y = [p.label for p in te]
    results["setup"] = {
        "train": len(tr),
        "train_positive": sum(p.label for p in tr),
        "test": len(te),
        "test_positive": sum(y),
        "llm_test": min(args.llm_test_size, len(te)),
        "epochs": args.epochs,
        "encoder": args.encoder,
        "machine": f"{os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"train {len(tr)} pairs, test {len(te)} pairs (split by query)")

    probs: dict = {}  # test probabilities of the deterministic systems measured in this run

    def deterministic(name: str, prob, n_test: int | None = None, extra: dict | None = None):
        probs[name] = prob
        yy = y[:n_test] if n_test else y
        rep = {**binary_report(yy, prob), "query_auc": query_auc(te[: len(yy)], prob)}
        ci = {m: bootstrap_ci(yy, prob, m)[1] for m in ("roc_auc", "accuracy")}
        results[name] = {"mean": rep, "ci95": ci, "interval": "bootstrap over test pairs"}
        results[name].update(extra or {})
        _store(out, results)

    if "lexical_lr" in args.systems and "lexical_lr" not in results:
        deterministic("lexical_lr", LexicalRelevanceLR().fit(tr).predict_proba(te))
    if "biencoder" in args.systems and "biencoder" not in results:
        deterministic("biencoder", BiEncoderCosine(args.encoder).predict_proba(te))
    if "prior" in args.systems and "prior" not in results:
        prior = RelevancePrior(encoder=args.encoder).fit(tr)
        t0 = time.perf_counter()
        prob = prior.predict_proba(te)
        pps = len(te) / (time.perf_counter() - t0)
        deterministic("prior", prob, extra={"pairs_per_s": pps})
    if "prior" in probs and "biencoder" in probs:  # the paired gain, on the same test pairs
        d, lo, hi = paired_bootstrap_diff(y, probs["prior"], probs["biencoder"])
        results["prior_minus_biencoder"] = {"roc_auc": d, "ci95": [lo, hi]}
        print(f"prior - biencoder: {d:+.4f} ROC-AUC (95% paired bootstrap {lo:+.4f}..{hi:+.4f})")
        _store(out, results)

    extra = {}
    if getattr(args, "head_lr_mult", None) is not None:
        extra["head_lr_multiplier"] = args.head_lr_mult
    if getattr(args, "combine", None) is not None:
        extra["combine"] = args.combine
    if getattr(args, "head_init", None) is not None:
        extra["head_init"] = args.head_init
    if getattr(args, "warm_start", None) is not None:
        extra["warm_start"] = args.warm_start
    unlabelled = None
    if getattr(args, "unlabelled", "recombined") == "train":
        from dualexpert.relevance import load_pairs, split_by_query

        # labels unused; distill samples warm_start_pairs of them
        unlabelled = split_by_query(load_pairs(args.data, threshold=args.threshold), 0.2, seed=0)[0]
    for name, kw in VARIANTS.items():
        if name not in args.systems:
            continue
        seeds = args.seeds
        if args.ablation_seeds is not None and name in ("reasoning", "reasoning+warmup+ignore_cls"):
            seeds = args.ablation_seeds
        if kw["aux"] != "none":
            missing = [p.id for p in tr if p.id not in rat]
            if missing:
                print(f"skip {name}: {len(missing)} training pairs have no rationale yet")
                continue
        key = name
        if getattr(args, "lam", None) is not None and kw["aux"] != "none":
            kw = {**kw, "lam": args.lam}
            key = f"{name}@lam{args.lam:g}"
        runs = results.setdefault(key, {"runs": {}})["runs"]
        for seed in seeds:
            if str(seed) in runs:
                continue
            t0 = time.perf_counter()
            model = RelevanceDistiller(
                encoder=args.encoder, epochs=args.epochs, seed=seed, **kw, **extra
            ).fit(
                tr,
                rat,
                output_dir=out / "ckpt" / f"{key}-s{seed}",
                progress=False,
                unlabelled=unlabelled,
            )
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            prob = model.predict_proba(te)
            pps = len(te) / (time.perf_counter() - t0)
            if seed == seeds[0]:
                model.save(out / "models" / key)
            alone = {}
            # the stacked cross-encoder alone, on the test pairs (its weight is folded into its
            # head: with weight 0 it scores nothing)
            if model.combine_ == "stack" and model.correction_scale_ > 0:
                c = model._cross_logits([(p.query, p.title) for p in te])
                alone = {"cross_roc_auc": binary_report(y, 1 / (1 + np.exp(-c)))["roc_auc"]}
            runs[str(seed)] = {
                **binary_report(y, prob),
                **alone,
                **{f"warm_start_{k}": v for k, v in model.warm_start_.items()},
                "query_auc": query_auc(te, prob),
                "fit_seconds": fit_s,
                "pairs_per_s": pps,
                "correction_scale": model.correction_scale_,
                **{f"holdout_{k}": v for k, v in model.holdout_.items()},
            }
            print(key, seed, f"auc={runs[str(seed)]['roc_auc']:.4f}", f"{fit_s:.0f}s")
            _store(out, results)
        if runs:
            _store(out, results)  # takes in seeds that parallel runs finished, and summarises

    for mode, shots in (("llm_zero_shot", 0), ("llm_few_shot", 4)):
        if mode not in args.systems or mode in results:
            continue
        import dspy

        from dualexpert.lm import get_lm
        from dualexpert.relevance.judge import RelevanceJudge, balanced_demos

        n = min(args.llm_test_size, len(te))
        lm = get_lm(args.llm, cache=False)
        score = hasattr(getattr(lm, "engine", None), "score_options")
        judge = RelevanceJudge("score" if score else "generate", balanced_demos(tr, shots))
        probs = []
        t0 = time.perf_counter()
        with dspy.context(lm=lm):
            for i, p in enumerate(te[:n]):
                probs.append(judge(query=p.query, title=p.title).probability)
                if (i + 1) % 25 == 0:
                    print(f"  {mode}: {i + 1}/{n}", flush=True)
        secs = time.perf_counter() - t0
        deterministic(
            mode, np.asarray(probs), n, {"pairs_per_s": n / secs, "judge_mode": judge.mode}
        )

    if "llm_probe" in args.systems and "llm_probe" not in results:
        from dualexpert.relevance.probe import HiddenStateProbe

        n = min(args.llm_test_size, len(te))
        probe = HiddenStateProbe(args.llm, cache=out / "llm_probe_vectors.npz")
        probe.fit(tr, progress=True)
        t0 = time.perf_counter()
        prob = probe.predict_proba(te[:n], progress=True)
        secs = time.perf_counter() - t0
        deterministic("llm_probe", prob, n, {"pairs_per_s": n / secs, "C": probe.chosen_C})
    return results


def print_table(results: dict) -> None:
    cols = ["roc_auc", "query_auc", "accuracy", "precision@0.5", "recall@0.5", "precision@0.7",
            "recall@0.7"]  # fmt: skip
    print(f"{'system':32s} " + " ".join(f"{c:>15s}" for c in cols) + f" {'pairs/s':>9s}")
    for name, r in results.items():
        if name == "setup" or "mean" not in r:
            continue
        cells = []
        for c in cols:
            m, h = r["mean"].get(c, float("nan")), r.get("ci95", {}).get(c)
            cells.append(f"{m:.4f}±{h:.3f}" if h is not None else f"{m:.4f}      ")
        pps = r["mean"].get("pairs_per_s") or r.get("pairs_per_s")
        print(f"{name:32s} " + " ".join(f"{c:>15s}" for c in cells) + f" {pps or 0:9.1f}")
    paired = results.get(PAIRED) or {}
    if paired:
        print(f"\nminus {BASELINE}, same seeds, points (mean ± 95% t; by seed)")
    for name, row in paired.items():
        for metric, d in row.items():
            seeds = ", ".join(f"{s}: {v:+.2f}" for s, v in sorted(d["by_seed"].items()))
            print(f"{name:32s} {metric:14s} {d['mean']:+.2f} ± {d['ci95']:.2f}  ({seeds})")


if __name__ == "__main__":
    main()
