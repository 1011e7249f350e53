"""Dual expert on MWPD (Table 4 style): the domain expert alone against the dual expert with
each prompt strategy and candidate representation, at a threshold chosen on dev data.

    python benchmarks/dual_expert.py --model runs/mwpd-domain_expert-s42/model \
        --configs score:path,zero_shot:path,rank:path,cot_rank:path,score:leaf,score:descriptive

MWPD validation is shuffled with ``--seed``; the first ``--dev-size`` products are the dev set,
the next ``--test-size`` the test set. The threshold routes the ``--traffic`` share of dev
products with the lowest domain-expert confidence to the LLM. The fusion weight of the ``score``
strategy is chosen on the routed dev products; the fused row reuses the test run's LLM scores.
Each configuration's records go to ``<out>/<strategy>-<representation>.jsonl`` as they come, so
an interrupted run resumes; ``--table`` prints the table of a finished run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _split(args):
    from dualexpert.data import load_catalogue

    prods = load_catalogue(Path(args.data) / "validation.jsonl").products
    order = list(range(len(prods)))
    random.Random(args.seed).shuffle(order)
    dev = [prods[i] for i in order[: args.dev_size]]
    test = [prods[i] for i in order[args.dev_size : args.dev_size + args.test_size]]
    return dev, test


def _run(de, prods, path: Path, label: str) -> list[dict]:
    from dualexpert.batch import classify_products
    from dualexpert.evaluation.dual import labelled_records

    t0, n = time.perf_counter(), len(prods)

    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if done % 25 == 0 or done == n:
            print(f"  {label}: {done}/{n} ({time.perf_counter() - t0:.0f} s)", flush=True)

    classify_products(de, prods, path, progress=tick)
    want = {p.id for p in prods}
    return [r for r in labelled_records(path) if r["id"] in want]


def _score(records: list[dict], name: str) -> dict:
    from dualexpert.evaluation.dual import summarise_records

    s = summarise_records(records)
    routed = [r for r in records if r["routed"]]
    s["seconds_per_routed"] = float(np.mean([r["seconds"] for r in routed])) if routed else 0.0
    s["system"] = name
    return s


def _fused(records: list[dict], weight: float | None) -> list[dict]:
    from dualexpert.evaluation.routing import fused_choice

    out = []
    for r in records:
        r = dict(r)
        if r["routed"]:
            r["category"] = fused_choice(r, weight)
        out.append(r)
    return out


def _summaries(dom, test, threshold: float, args, out: Path):
    """A summary index for the candidates of the routed test products (train products as
    the summariser's examples), built resumably through a journal."""
    from dualexpert.indexes import CategorySummariser, SummaryIndex

    from dualexpert.data import load_catalogue

    folder = out / "summaries"
    if (folder / "meta.json").exists():
        return SummaryIndex.load(folder)
    cats: list[str] = []  # one top-K pass: the routed products and their candidates
    for cands in dom.predict_topk(test, k=args.k):
        if cands[0].probability < threshold:
            cats += [c.id for c in cands if c.id not in cats]
    train = load_catalogue(Path(args.data) / "train.jsonl").products
    print(f"summaries: {len(cats)} categories", flush=True)
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    ix = SummaryIndex().build(
        dom.taxonomy,
        train,
        summariser=CategorySummariser(max_tokens=args.summary_tokens),
        categories=cats,
        n_examples=args.n_examples,
        journal=folder / "journal.jsonl",
        progress=lambda i, n: (
            print(f"  summaries {i}/{n} ({time.perf_counter() - t0:.0f} s)")
            if i % 10 == 0 or i == n
            else None
        ),
    )
    ix.save(folder)
    return ix


def print_table(results: dict) -> None:
    cols = (
        "system",
        "routed",
        "routed acc (dual / domain)",
        "fixed",
        "broken",
        "fallback",
        "lvl3 acc",
        "lvl3 wF1",
        "lvl3 mF1",
        "LLM calls/product",
        "s/routed product",
    )
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for s in results["rows"]:
        d = s["dual"]
        print(
            f"| {s['system']} | {s['routed']} | {s['routed_dual_accuracy']:.3f} / "
            f"{s['routed_domain_accuracy']:.3f} | {s['fixed']} | {s['broken']} | {s['fallback']} "
            f"| {d['accuracy']:.4f} | {d['f1_weighted']:.4f} | {d['f1_macro']:.4f} "
            f"| {s['llm_calls_per_product']:.3f} | {s['seconds_per_routed']:.2f} |"
        )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/mwpd-domain_expert-s42/model")
    ap.add_argument("--data", default=str(SHARED / "mwpd"))
    ap.add_argument("--configs", default="score:path,zero_shot:path,rank:path,cot_rank:path")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--dev-size", type=int, default=300)
    ap.add_argument("--test-size", type=int, default=400)
    ap.add_argument("--traffic", type=float, default=0.12, help="dev share routed to the LLM")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm", default=None, help="qwen-1.5b (default), smollm2, .gguf or LiteLLM")
    ap.add_argument("--n-examples", type=int, default=6, help="products shown per summary")
    ap.add_argument("--summary-tokens", type=int, default=96, help="cap per summary")
    ap.add_argument("--out", default="benchmarks/results/dual-mwpd")
    ap.add_argument("--table", action="store_true", help="only print the saved table")
    args = ap.parse_args(argv)
    out = Path(args.out)
    res_file = out / "results.json"
    if args.table:
        results = json.loads(res_file.read_text())
        print_table(results)
        return results
    if not Path(args.data).exists():
        raise SystemExit(f"data not found: {args.data} (see ../shared/data/README.md)")

    import dspy

    from dualexpert.domain import DomainExpert
    from dualexpert.evaluation.routing import choose_fusion_weight
    from dualexpert.general import GeneralExpert
    from dualexpert.lm import get_lm
    from dualexpert.pipeline import DualExpert

    out.mkdir(parents=True, exist_ok=True)
    dom = DomainExpert.load(args.model)
    dev, test = _split(args)
    p_dev = np.array([r[0].probability for r in dom.predict_topk(dev, k=1)])
    threshold = float(np.quantile(p_dev, args.traffic))
    print(f"dev {len(dev)}, test {len(test)}; threshold {threshold:.4f} routes "
          f"{(p_dev < threshold).mean():.1%} of dev")  # fmt: skip
    dspy.configure(lm=get_lm(args.llm), track_usage=True)

    def pipeline(strategy: str, rep: str, summaries=None) -> DualExpert:
        return DualExpert(
            dom, GeneralExpert(strategy), k=args.k, threshold=threshold,
            representation=rep, summaries=summaries,
        )  # fmt: skip

    results: dict = {
        "setup": {
            "model": args.model,
            "dev": len(dev),
            "test": len(test),
            "seed": args.seed,
            "k": args.k,
            "traffic_target": args.traffic,
            "threshold": threshold,
            "llm": args.llm or "qwen-1.5b",
            "llm_threads": os.environ.get("DUALEXPERT_LLM_THREADS", "default"),
            "machine": f"{os.cpu_count()} CPU cores",
            "date": time.strftime("%Y-%m-%d"),
        },
        "rows": [],
    }
    base = pipeline("zero_shot", "path")
    base.threshold = 0.0  # nothing routed: the domain expert alone
    dom_records = _run(base, test, out / "domain.jsonl", "domain expert")
    results["rows"].append(_score(dom_records, "domain expert alone"))
    for cfg in args.configs.split(","):
        strategy, rep = cfg.split(":")
        summaries = None
        if rep == "summary":
            summaries = _summaries(dom, test, threshold, args, out)
        de = pipeline(strategy, rep, summaries)
        recs = _run(de, test, out / f"{strategy}-{rep}.jsonl", cfg)
        results["rows"].append(_score(recs, f"dual, {strategy}, {rep}"))
        if strategy == "score":
            # the weight is chosen on dev; summaries exist only for the test candidates, so the
            # summary row takes the weight chosen with full paths
            dev_rep = "path" if rep == "summary" else rep
            dev_de = de if dev_rep == rep else pipeline(strategy, dev_rep)
            dev_recs = _run(dev_de, dev, out / f"dev-{strategy}-{dev_rep}.jsonl", f"dev {cfg}")
            w, by_w = choose_fusion_weight([r for r in dev_recs if r["routed"]])
            shown = "LLM pick alone" if w is None else w
            row = _score(_fused(recs, w), f"dual, {strategy}, {rep}, fused (w={shown} on dev)")
            row["dev_fusion_accuracy"] = by_w
            results["rows"].append(row)
        res_file.write_text(json.dumps(results, indent=1))
    print_table(results)
    return results


if __name__ == "__main__":
    main()
