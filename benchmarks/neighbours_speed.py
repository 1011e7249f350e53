"""Prediction speed of the domain tier with and without its neighbour index, on torch and on
ONNX Runtime (products per second of ``predict_proba``).

    python benchmarks/domain_expert.py ...        # or any model saved by `dualexpert train`
    dualexpert export-onnx MODEL
    python benchmarks/neighbours_speed.py MODEL --n 1000 --repeats 3

The model must have a neighbour index (``MODEL/neighbours/``) and an ONNX export. The four
settings are timed in turn within each repeat, so that drift of a shared machine falls on all of
them alike; the median is reported. Writes ``benchmarks/results/neighbours-speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import SHARED, cpu_name  # noqa: E402

from dualexpert.data import PRESETS, load_catalogue  # noqa: E402
from dualexpert.domain import DomainExpert  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/neighbours-speed.json")
    args = ap.parse_args()
    prods = load_catalogue(SHARED / "mwpd" / "validation.jsonl", PRESETS["mwpd"]).products
    prods = prods[: args.n]
    experts = {}
    for runtime in ("torch", "onnx"):
        with_index = DomainExpert.load(args.model, runtime=runtime)
        if with_index.neighbours_ is None:
            raise SystemExit(f"{args.model} has no neighbour index")
        without = DomainExpert.load(args.model, runtime=runtime)
        without.neighbours_ = None
        experts[f"{runtime}, without the neighbour index"] = without
        experts[f"{runtime}, with it (the default)"] = with_index
    answers = {name: ex.predict_proba(prods) for name, ex in experts.items()}  # also a warm-up
    rates: dict[str, list[float]] = {name: [] for name in experts}
    for _ in range(args.repeats):
        for name, ex in experts.items():
            t0 = time.perf_counter()
            ex.predict_proba(prods)
            rates[name].append(len(prods) / (time.perf_counter() - t0))
    default = "with it (the default)"
    diff = float(abs(answers[f"onnx, {default}"] - answers[f"torch, {default}"]).max())
    print(f"| {len(prods)} MWPD products | products/s (median) | all repeats |")
    print("|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {sorted(r)[len(r) // 2]:.0f} | {', '.join(f'{x:.0f}' for x in r)} |")
    print(f"largest difference of the ONNX probabilities from torch's: {diff:.2e}")
    args.out.write_text(
        json.dumps(
            {
                "rates": rates,
                "median": {k: sorted(v)[len(v) // 2] for k, v in rates.items()},
                "max_abs_diff_onnx_vs_torch": diff,
                "n": len(prods),
                "model": str(args.model),
                "threads": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())),
                "command": " ".join(sys.argv),
                "date": str(date.today()),
                "machine": f"{cpu_name()}, {os.cpu_count()} cores",
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
