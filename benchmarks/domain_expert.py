"""Table 1 / Table 3 style benchmark of the domain expert against baselines.

Each system trains on the training file and is scored on the test file with the same metrics
(per-level accuracy, weighted / macro P/R/F1, top-K recall, head/tail). Results are written
one JSON per system to ``benchmarks/results/<dataset>/`` and the table of all systems present
is printed.

    python benchmarks/domain_expert.py --dataset mwpd --systems tfidf_linear,knn_embed
    python benchmarks/domain_expert.py --dataset mwpd --systems domain_expert --epochs 3
    python benchmarks/domain_expert.py --dataset mwpd --table
    python benchmarks/domain_expert.py --systems tfidf_linear --synthetic FILE --tag @syn

``--synthetic FILE`` (from ``dualexpert synthesize``) adds LLM-written products to the training
data of every system; head/tail and the test set stay those of the real data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dualexpert.data import PRESETS, Product, load_catalogue  # noqa: E402
from dualexpert.evaluation.baselines import KnnEmbeddingRanker, TfidfLinearRanker  # noqa: E402
from dualexpert.evaluation.metrics import categorisation_report  # noqa: E402

SHARED = Path(os.environ.get("DUALEXPERT_SHARED_DATA", ROOT.parent / "shared" / "data"))
ABLATIONS = {
    "ce_finetune": dict(label_augmentation=False, focal=False, bootstrap=False, label_init=False),
    "domain_expert": {},
    "no_label_aug": dict(label_augmentation=False),
    "no_phase1": dict(focal=False),
    "no_phase2": dict(bootstrap=False),
    "no_label_init": dict(label_init=False),
}
SYSTEMS = ["tfidf_linear", "knn_embed", *ABLATIONS]


def load_dataset(
    name: str, seed: int = 0, context: bool = True
) -> tuple[list[Product], list[Product]]:
    """Train and test products; ``context=False`` reads MWPD without its breadcrumb and URL."""
    if name == "mwpd":
        d = SHARED / "mwpd"
        cols = PRESETS["mwpd"] if context else PRESETS["mwpd"].model_copy(update={"context": []})
        return (
            load_catalogue(d / "train.jsonl", cols).products,
            load_catalogue(d / "validation.jsonl", cols).products,
        )
    if name == "bigbasket":
        prods = load_catalogue(SHARED / "bigbasket" / "products.csv", on_error="skip").products
        rng = random.Random(seed)
        idx = list(range(len(prods)))
        rng.shuffle(idx)
        cut = int(0.8 * len(idx))
        return [prods[i] for i in idx[:cut]], [prods[i] for i in idx[cut:]]
    raise SystemExit(f"unknown dataset {name}")


def _timed_ranker(ranker, train, test, k):
    t0 = time.perf_counter()
    ranker.fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    topk = ranker.predict_topk(test, k=k)
    pred_s = time.perf_counter() - t0
    return [[c.path for c in cands] for cands in topk], fit_s, pred_s


def ranked_expert(train, test, k, args, overrides, extra=()):
    from dualexpert.domain import DomainExpert

    cfg = dict(
        encoder=args.encoder,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=args.lr,
        seed=args.seed,
        **overrides,
    )
    if args.teacher:
        cfg.update(
            teacher=str(args.teacher),
            teacher_weight=args.teacher_weight,
            teacher_temperature=args.teacher_temperature,
        )
    if args.label_summaries:
        cfg["label_summaries"] = str(args.label_summaries)
    if args.prior_adjustment is not None:
        cfg["prior_adjustment"] = args.prior_adjustment
    expert = DomainExpert(**cfg)
    run_dir = ROOT / "runs" / f"{args.dataset}-{args.system_name}{args.tag}-s{args.seed}"
    if not args.resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run unless asked to resume
    t0 = time.perf_counter()
    expert.fit(train, output_dir=run_dir / "checkpoints", progress=not args.quiet, synthetic=extra)
    fit_s = time.perf_counter() - t0
    expert.save(run_dir / "model")
    expert.predict_proba(test[:64])  # warm-up
    t0 = time.perf_counter()
    topk = expert.predict_topk(test, k=k)
    pred_s = time.perf_counter() - t0
    return [[c.path for c in cands] for cands in topk], fit_s, pred_s


def run_system(name, train, test, args, extra=()):
    """Fit ``name`` on ``train`` plus ``extra`` (synthetic products) and score it on ``test``."""
    k = 10
    args.system_name = name
    fit_on = [*train, *extra]
    if name == "tfidf_linear":
        ranked, fit_s, pred_s = _timed_ranker(TfidfLinearRanker(), fit_on, test, k)
    elif name == "knn_embed":
        ranked, fit_s, pred_s = _timed_ranker(KnnEmbeddingRanker(), fit_on, test, k)
    else:
        ranked, fit_s, pred_s = ranked_expert(train, test, k, args, ABLATIONS[name], extra)
    report = categorisation_report(
        [p.category for p in test],
        [r[0] for r in ranked],
        ranked,
        Counter(p.category for p in train),
        ks=(1, 3, 5, 10),
    )
    report["timing"] = {
        "fit_seconds": fit_s,
        "predict_seconds": pred_s,
        "products_per_second": len(test) / pred_s,
    }
    report["meta"] = {
        "system": name,
        "dataset": args.dataset,
        "n_train": len(train),
        "n_synthetic": len(extra),
        "synthetic": args.synthetic,
        "context": args.context,
        "n_test": len(test),
        "date": str(date.today()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "config": {
            "encoder": args.encoder,
            "epochs": args.epochs,
            "max_length": args.max_length,
            "lr": args.lr,
            "seed": args.seed,
            "teacher": str(args.teacher) if args.teacher else None,
            "teacher_weight": args.teacher_weight if args.teacher else None,
            "teacher_temperature": args.teacher_temperature if args.teacher else None,
            "label_summaries": str(args.label_summaries) if args.label_summaries else None,
            "summary_samples": str(args.summary_samples) if args.summary_samples else None,
            "prior_adjustment": args.prior_adjustment,
        }
        if name in ABLATIONS
        else {"seed": args.seed},  # the split's seed
    }
    return report


def _seed_label(report: dict) -> str:
    seed = report["meta"].get("config", {}).get("seed", 42)
    return "" if seed == 42 else f" (seed {seed})"


def print_table(folder: Path) -> None:
    rows = []
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        if "meta" in r:
            rows.append(r)
    order = {s: i for i, s in enumerate(SYSTEMS)}
    rows.sort(
        key=lambda r: (
            r["meta"].get("tag", ""),
            order.get(r["meta"]["system"], 99),
            r["meta"].get("config", {}).get("seed", 42),
        )
    )
    hdr = (
        "system",
        "lvl1 acc",
        "lvl2 acc",
        "lvl3 acc",
        "lvl3 wF1",
        "lvl3 mF1",
        "top10",
        "head mF1",
        "tail mF1",
        "fit s",
        "pred/s",
    )
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        lv = r.get("lvl3", r["leaf"])
        vals = [
            r["meta"]["system"] + r["meta"].get("tag", "") + _seed_label(r),
            f"{r['lvl1']['accuracy']:.4f}",
            f"{r['lvl2']['accuracy']:.4f}",
            f"{lv['accuracy']:.4f}",
            f"{lv['f1_weighted']:.4f}",
            f"{lv['f1_macro']:.4f}",
            f"{r['leaf'].get('top10_recall', float('nan')):.4f}",
            f"{r.get('leaf_head', {}).get('f1_macro', float('nan')):.4f}",
            f"{r.get('leaf_tail', {}).get('f1_macro', float('nan')):.4f}",
            f"{r['timing']['fit_seconds']:.0f}",
            f"{r['timing']['products_per_second']:.0f}",
        ]
        print("| " + " | ".join(vals) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mwpd", choices=["mwpd", "bigbasket"])
    ap.add_argument("--systems", default="tfidf_linear,knn_embed,domain_expert")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--table", action="store_true", help="only print the table of saved results")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--resume", action="store_true", help="resume interrupted encoder runs")
    ap.add_argument("--tag", default="", help="suffix of the result files, e.g. @1ep")
    ap.add_argument("--synthetic", help="synthetic products (dualexpert synthesize) to add")
    ap.add_argument(
        "--context",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="MWPD: read the breadcrumb and URL columns (sessions before 29 did not)",
    )
    ap.add_argument("--teacher", type=Path, help="a saved domain expert to distil from")
    ap.add_argument("--teacher-weight", type=float, default=0.5)
    ap.add_argument("--teacher-temperature", type=float, default=2.0)
    ap.add_argument(
        "--label-summaries",
        type=Path,
        help="a summary index (dualexpert summarize): the head starts at path + summary",
    )
    ap.add_argument(
        "--summary-samples",
        type=Path,
        help="a summary index: each leaf's summary is added as one labelled training text "
        "(as the library adds synthetic products: left out of the prior and the neighbour index)",
    )
    ap.add_argument(
        "--prior-adjustment",
        type=float,
        help="tau (default: 1 with --synthetic, else 0)",
    )
    ap.add_argument(
        "--write-train",
        type=Path,
        help="only write the seed's training split as JSONL here (for dualexpert synthesize)",
    )
    args = ap.parse_args()
    folder = ROOT / "benchmarks" / "results" / args.dataset
    folder.mkdir(parents=True, exist_ok=True)
    if not args.table:
        if not SHARED.is_dir():
            raise SystemExit(f"shared data not found at {SHARED}")
        train, test = load_dataset(args.dataset, args.seed, args.context)
        if args.write_train:
            with args.write_train.open("w", encoding="utf-8") as f:
                for p in train:
                    rec = p.model_dump(include={"id", "title", "description"})
                    f.write(json.dumps(rec | {"category": " > ".join(p.category)}) + "\n")
            print(f"wrote {len(train)} training products to {args.write_train}")
            return
        extra = []
        if args.synthetic or args.summary_samples:
            from dualexpert.taxonomy import Taxonomy

            tax = Taxonomy.from_paths(p.category for p in train)
        if args.synthetic:
            from dualexpert.synthetic import load_synthetic

            extra = load_synthetic(args.synthetic, tax)
        if args.summary_samples:  # one labelled text per summarised leaf
            from dualexpert.indexes import SummaryIndex

            written = SummaryIndex.load(args.summary_samples).summaries
            extra += [
                Product(id=f"summary:{c}", title=t, category=tax.get(c).path)
                for c, t in written.items()
            ]
        for name in args.systems.split(","):
            if name not in SYSTEMS:
                raise SystemExit(f"unknown system {name}; choose from {SYSTEMS}")
            report = run_system(name, train, test, args, extra)
            report["meta"]["tag"] = args.tag
            seed = "" if args.seed == 42 else f"-s{args.seed}"  # 42: the tables' default seed
            (folder / f"{name}{args.tag}{seed}.json").write_text(json.dumps(report, indent=1))
            print(
                f"{name}: lvl3 acc {report['lvl3']['accuracy']:.4f} "
                f"wF1 {report['lvl3']['f1_weighted']:.4f} mF1 {report['lvl3']['f1_macro']:.4f}",
                flush=True,
            )
    print_table(folder)


if __name__ == "__main__":
    main()
