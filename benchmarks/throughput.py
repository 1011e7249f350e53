"""Prediction throughput of a saved domain expert on CPU (products per second).

    python benchmarks/throughput.py runs/mwpd-domain_expert-s42/model --n 2000 --repeats 3

Prints a table and writes benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dualexpert.data import load_catalogue  # noqa: E402
from dualexpert.domain import DomainExpert  # noqa: E402

SHARED = Path(os.environ.get("DUALEXPERT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", default="64,128,256")
    ap.add_argument("--quantize", action="store_true", help="int8 dynamic quantisation")
    args = ap.parse_args()
    expert = DomainExpert.load(args.model)
    prods = load_catalogue(SHARED / "mwpd" / "validation.jsonl").products[: args.n]
    agreement = None
    if args.quantize:
        base = expert.predict(prods)
        expert.config.quantize = True
        quant = expert.predict(prods)
        agreement = sum(a == b for a, b in zip(base, quant, strict=True)) / len(prods)
        print(f"int8: top-1 agrees with fp32 on {agreement:.4f} of {len(prods)} products")
    expert.predict_proba(prods[:128])  # warm-up
    rows = []
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            expert.predict_topk(prods, k=10, batch_size=bs)
            rates.append(len(prods) / (time.perf_counter() - t0))
        rows.append(
            {
                "batch_size": bs,
                "median_products_per_second": sorted(rates)[len(rates) // 2],
                "all": rates,
            }
        )
    print("| batch size | products/s (median) | runs |")
    print("|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch_size']} | {r['median_products_per_second']:.0f} | "
            f"{', '.join(f'{x:.0f}' for x in r['all'])} |"
        )
    name = "throughput-int8.json" if args.quantize else "throughput.json"
    out = ROOT / "benchmarks" / "results" / name
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "n": len(prods),
                "model": args.model,
                "max_length": expert.config.max_length,
                "quantize": args.quantize,
                "top1_agreement_with_fp32": agreement,
                "date": str(date.today()),
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
