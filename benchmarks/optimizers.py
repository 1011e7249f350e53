"""Small-budget DSPy optimisation runs of the general expert, domain expert fixed: before and
after scores on a held-back split, one row per optimiser.

The optimiser's training products and the dev products are disjoint samples of ``--data``
(MWPD's validation file by default: the domain expert trained on MWPD's train file, so its
candidates there would be over-confident). ``--max-p`` keeps only products whose domain top-1
probability is below it, i.e. those a DualExpert with that threshold sends to the LLM.

    .venv/bin/python benchmarks/optimizers.py --optimizers bootstrap,gepa \\
        --model runs/mwpd-domain_expert-s42/model --llm qwen-1.5b --n-train 24 --n-dev 60

Writes ``benchmarks/results/optimizers/<tag>.json`` (one record per optimiser) and prints a
table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALEXPERT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "runs/mwpd-domain_expert-s42/model"))
    ap.add_argument("--data", default=str(SHARED / "mwpd" / "validation.jsonl"))
    ap.add_argument("--columns", default="mwpd", help="column preset; 'none' to detect")
    ap.add_argument("--optimizers", default="bootstrap,gepa")
    ap.add_argument("--llm", default="qwen-1.5b")
    ap.add_argument("--api-base", default=None)
    ap.add_argument("--strategy", default="zero_shot")
    ap.add_argument("--representation", default="descriptive")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--max-p", type=float, default=0.9, help="keep products with p(top-1) < this")
    ap.add_argument("--n-train", type=int, default=24)
    ap.add_argument("--n-dev", type=int, default=60)
    ap.add_argument("--max-calls", type=int, default=400, help="LLM call cap per optimiser run")
    ap.add_argument("--setting", action="append", default=[], help="OPT.NAME=VALUE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "optimizers"))
    return ap.parse_args(argv)


def settings_for(name: str, items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        opt, _, field = key.partition(".")
        if opt == name:
            try:
                out[field] = json.loads(value)
            except json.JSONDecodeError:
                out[field] = value
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    import dspy
    from dualexpert.optimizers import build_examples, optimize

    from dualexpert.data import load_catalogue
    from dualexpert.domain import DomainExpert
    from dualexpert.lm import get_lm

    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    domain = DomainExpert.load(args.model)
    cols = None if args.columns == "none" else args.columns
    products = [p for p in load_catalogue(args.data, cols).products if p.category is not None]
    random.Random(args.seed).shuffle(products)
    # candidates once for all products considered, then the uncertain ones
    need = (args.n_train + args.n_dev) * 4
    examples = build_examples(domain, products[:need], k=args.k, representation=args.representation)
    examples = [e for e in examples if e.domain_probability < args.max_p]
    if len(examples) < args.n_train + args.n_dev:
        more = build_examples(domain, products[need:], k=args.k, representation=args.representation)
        examples += [e for e in more if e.domain_probability < args.max_p]
    trainset = examples[: args.n_train]
    devset = examples[args.n_train : args.n_train + args.n_dev]
    if len(trainset) < args.n_train or len(devset) < 1:
        sys.exit(f"only {len(examples)} products with p(top-1) < {args.max_p} in {args.data}")
    lm = get_lm(args.llm, api_base=args.api_base)
    dspy.configure(lm=lm)
    tag = args.tag or time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for name in names:
        res = optimize(
            trainset,
            devset,
            name,
            lm=lm,
            strategy=args.strategy,
            max_calls=args.max_calls,
            settings=settings_for(name, args.setting),
            seed=args.seed,
            out=out_dir / f"{tag}-{name}.program.json",
        )
        rec = res.to_dict()
        rec.update(
            llm=args.llm,
            model=args.model,
            data=args.data,
            strategy=args.strategy,
            representation=args.representation,
            k=args.k,
            max_p=args.max_p,
            seed=args.seed,
        )
        records.append(rec)
        (out_dir / f"{tag}.json").write_text(json.dumps(records, indent=1))
    print_table(records)
    print(f"wrote {out_dir / f'{tag}.json'}")
    return records


def print_table(records: list[dict]) -> None:
    head = (
        "| optimiser | train | dev | domain exact | before exact | after exact | before hier "
        "| after hier | before MRR | after MRR | LLM calls | seconds |"
    )
    print(head)
    print("|" + "---|" * 12)
    for r in records:
        b, a, d = r["before"], r["after"], r["domain"]
        print(
            f"| {r['optimizer']} | {r['n_train']} | {r['n_dev']} | {d['exact']:.3f} "
            f"| {b['exact']:.3f} | {a['exact']:.3f} | {b['hierarchical']:.3f} "
            f"| {a['hierarchical']:.3f} | {b['mrr']:.3f} | {a['mrr']:.3f} "
            f"| {r['calls']} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
