"""The distilled general expert (issue 17, lever 1): a cross-encoder reranker over the domain
expert's candidates, against the domain expert alone, on the same products.

Train one reranker per seed (``--fit``), then evaluate (default) every saved pair of
``runs/<dataset>-domain_expert<tag>-s<seed>/model`` and ``runs/<dataset>-reranker<rtag>-s<seed>``:

* the encoder alone and the shipped (lexically fused) domain expert;
* the dual system with the reranker as general expert: products whose domain top-1 is below the
  threshold get their top-K candidates reranked, alone or fused
  (``log p_domain + w * log p_reranker``), for several K, thresholds and ``w``.

Prints a table (means with 95% intervals over seeds) and writes JSON.

    python benchmarks/reranker.py --fit --seed 42
    python benchmarks/reranker.py --seeds 42 43 44

With LLM rationales (the second paper's auxiliary target; same seed, data and settings):

    python benchmarks/reranker.py --write-rationales runs/reranker-rationales.jsonl \
        --max-products 800
    python benchmarks/reranker.py --fit --seed 42 --max-products 800 --rtag @800
    python benchmarks/reranker.py --fit --seed 42 --max-products 800 --rtag @800rat \
        --rationales runs/reranker-rationales.jsonl
    python benchmarks/reranker.py --seeds 42 43 44 --domain-seed 42 --tag @4ep-syn --rtag @800rat
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from domain_expert import load_dataset  # noqa: E402
from fusion import print_table as fusion_table  # noqa: E402
from fusion import scores, write_results  # noqa: E402

from dualexpert.domain import DomainExpert  # noqa: E402
from dualexpert.reranker import CategoryReranker, RerankerConfig  # noqa: E402
from dualexpert.reranker.estimator import log_softmax  # noqa: E402

COLUMNS = ("avg wF1", "lvl3 acc", "lvl3 wF1", "lvl3 mF1", "head mF1", "tail mF1", "routed")
SETTINGS = [  # (K, threshold, w); w None = the reranker's pick alone
    (5, 0.9, None), (5, 0.9, 0.5), (5, 0.9, 1.0), (5, 0.9, 2.0),
    (10, 0.9, 1.0), (3, 0.9, 1.0), (5, 0.7, 1.0), (5, 0.5, 1.0),
]  # fmt: skip


def training_set(args):
    """The training products and the taxonomy the reranker of ``--seed`` is trained on."""
    train, _ = load_dataset(args.dataset, args.seed if args.dataset == "bigbasket" else 0)
    expert = DomainExpert.load(domain_folder(args, args.seed)) if args.taxonomy_from else None
    from dualexpert.taxonomy import Taxonomy

    tax = expert.taxonomy if expert else Taxonomy.from_paths([p.category for p in train])
    return train, tax


def write_rationales(args) -> None:
    """LLM rationales for the products the reranker of ``--max-products`` trains on (the
    hardest, in catalogue order; ``--limit``: the first N of them), resumable."""
    import json

    import dspy

    from dualexpert.adapters import BriefChatAdapter
    from dualexpert.lm import configure_lm
    from dualexpert.reranker.rationales import rationale_requests, write_category_rationales

    train, tax = training_set(args)
    rr = CategoryReranker(negatives=args.negatives, max_products=args.max_products)
    reqs = rationale_requests(rr, train, tax)
    reqs = reqs[: args.limit]
    configure_lm(args.llm, None, parallel=args.parallel)
    dspy.configure(adapter=BriefChatAdapter())
    done = {"n": 0}

    def progress(n: int) -> None:
        done["n"] += n
        if done["n"] % 50 == 0:
            print(f"  {done['n']}/{len(reqs)}", flush=True)

    totals = write_category_rationales(
        reqs, args.write_rationales, progress=progress, parallel=args.parallel
    )
    totals["products_per_s"] = totals["written"] / max(totals["seconds"], 1e-9)
    print(json.dumps(totals))


def fit(args) -> None:
    import logging

    # the reranker logs how many of its pairs have a rationale
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("dualexpert.reranker").setLevel(logging.INFO)
    train, tax = training_set(args)
    out = reranker_folder(args, args.seed)
    t0 = time.perf_counter()
    rationales = None
    if args.rationales:
        from dualexpert.relevance import load_rationales

        rationales = load_rationales(args.rationales)
    rr = CategoryReranker(
        seed=args.seed,
        epochs=args.epochs,
        negatives=args.negatives,
        aux="decoder" if rationales else "none",
        lam=args.lam,
        decoder_warmup=not args.no_warmup,
        max_products=args.max_products,
    )
    rr.fit(train, tax, rationales, output_dir=str(out) + ".checkpoints", resume=True)
    rr.save(out)
    minutes = (time.perf_counter() - t0) / 60
    (out / "fit_minutes.txt").write_text(f"{minutes:.1f}\n")
    print(f"saved {out} ({minutes:.1f} min)")


def domain_folder(args, seed: int) -> Path:
    return ROOT / "runs" / f"{args.dataset}-domain_expert{args.tag}-s{seed}" / "model"


def reranker_folder(args, seed: int) -> Path:
    return ROOT / "runs" / f"{args.dataset}-reranker{args.rtag}-s{seed}"


def reranked(proba: np.ndarray, logits: dict, k: int, thr: float, w: float | None) -> np.ndarray:
    """Probabilities where each routed product's top-K is replaced by the dual decision."""
    out = proba.copy()
    routed = np.where(proba.max(axis=1) < thr)[0]
    for i in routed:
        top = np.argsort(-proba[i])[:k]
        lr = log_softmax(logits[i][:k])
        if w is None:
            z = lr
        else:
            z = np.log(np.maximum(proba[i, top], 1e-12)) + w * lr
        row = np.zeros_like(proba[i])
        row[top] = np.exp(log_softmax(z))
        out[i] = row
    return out


def run_seed(args, seed: int, test, counts) -> dict:
    domain_seed = args.domain_seed if args.domain_seed is not None else seed
    expert = DomainExpert.load(domain_folder(args, domain_seed))
    rr = CategoryReranker.load(reranker_folder(args, seed))
    p_enc = expert.encoder_proba(test)
    # the domain tier as shipped: fused, then prior-adjusted by the model's saved tau
    proba = expert.adjust_for_prior(expert.fused_proba(p_enc, [p.text() for p in test]))
    kmax = max(k for k, _, _ in SETTINGS)
    need = np.where(proba.max(axis=1) < max(t for _, t, _ in SETTINGS))[0]
    top = np.argsort(-proba, axis=1)[:, :kmax]
    texts = [test[i].text() for i in need]
    cands = [[rr.candidate_text(expert.classes_[j]) for j in top[i]] for i in need]
    t0 = time.perf_counter()
    scored = rr.score(texts, cands)
    secs = time.perf_counter() - t0
    logits = dict(zip(need.tolist(), scored, strict=True))
    rows = {
        "domain expert alone (encoder)": scores(expert, p_enc, test, counts),
        "domain expert, shipped (encoder + lexical)": scores(expert, proba, test, counts),
    }
    for k, thr, w in SETTINGS:
        how = "reranker alone" if w is None else f"fused w={w:g}"
        name = f"dual, reranker K={k}, p<{thr:g}, {how}"
        rows[name] = scores(expert, reranked(proba, logits, k, thr, w), test, counts)
        rows[name]["routed"] = float((proba.max(axis=1) < thr).mean())
    for r in rows.values():
        r.setdefault("routed", 0.0)
    recall = {}
    gold = [p.category for p in test]
    routed = proba.max(axis=1) < 0.9
    path = [expert.taxonomy.get(c).path for c in expert.classes_]
    for k in (1, 3, 5, 10, 20):
        hit = [gold[i] in {path[j] for j in np.argsort(-proba[i])[:k]} for i in np.where(routed)[0]]
        recall[k] = float(np.mean(hit)) if hit else float("nan")
    return {
        "seed": seed,
        "domain_seed": domain_seed,
        "rows": rows,
        "routed_topk_recall": recall,
        "rerank_pairs_s": sum(len(c) for c in cands) / secs,
        "rerank_products_s_at_k10": len(cands) / secs,
        "fit_minutes": _fit_minutes(args, seed),
    }


def _fit_minutes(args, seed: int) -> float | None:
    f = reranker_folder(args, seed) / "fit_minutes.txt"
    return float(f.read_text()) if f.is_file() else None


def print_table(runs: list[dict]) -> None:
    fusion_table(runs, COLUMNS)
    for run in runs:
        print(f"domain seed {run['domain_seed']}, reranker seed {run['seed']}: routed top-K "
              f"recall {run['routed_topk_recall']}, {run['rerank_pairs_s']:.0f} pairs/s, "
              f"fit {run['fit_minutes']} min")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mwpd", choices=["mwpd", "bigbasket"])
    ap.add_argument("--fit", action="store_true", help="train the reranker of --seed")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument(
        "--max-products",
        type=int,
        default=RerankerConfig().max_products,
        help="train on the hardest N products (the reranker's default)",
    )
    ap.add_argument("--taxonomy-from", action="store_true",
                    help="take the taxonomy from the domain expert of --seed")  # fmt: skip
    ap.add_argument("--tag", default="@4ep", help="the domain experts' tag")
    ap.add_argument("--domain-seed", type=int, default=None,
                    help="evaluate every reranker with this seed's domain expert")  # fmt: skip
    ap.add_argument("--rtag", default="", help="the rerankers' tag")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--rationales",
        type=Path,
        default=None,
        help="with --fit: LLM rationales (from --write-rationales) for the decoder",
    )
    ap.add_argument("--lam", type=float, default=0.1, help="with --rationales: L_aux weight")
    ap.add_argument(
        "--no-warmup",
        action="store_true",
        help="with --rationales: no decoder-only warm-up (the encoder trains from step 1)",
    )
    ap.add_argument(
        "--write-rationales",
        type=Path,
        default=None,
        metavar="FILE",
        help="write LLM rationales for the reranker of --seed's products",
    )
    ap.add_argument("--limit", type=int, default=None, help="with --write-rationales")
    ap.add_argument("--llm", default=None, help="with --write-rationales (default: local)")
    ap.add_argument("--parallel", type=int, default=16, help="with --write-rationales")
    args = ap.parse_args()
    if args.write_rationales:
        write_rationales(args)
        return
    if args.fit:
        fit(args)
        return
    out = args.out or ROOT / "benchmarks" / "results" / f"reranker-{args.dataset}{args.rtag}.json"
    runs = []
    for seed in args.seeds:
        split = (args.domain_seed or seed) if args.dataset == "bigbasket" else 0
        train, test = load_dataset(args.dataset, split)
        runs.append(run_seed(args, seed, test, Counter(p.category for p in train)))
        print(f"seed {seed} done", flush=True)
    print_table(runs)
    write_results(out, args.dataset, runs, len(test))


if __name__ == "__main__":
    main()
