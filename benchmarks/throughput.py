"""Prediction throughput of a saved domain expert on CPU (products per second).

    python benchmarks/throughput.py runs/mwpd-domain_expert@4ep-s42/model --n 2000 --repeats 3 \
        --schemes fp32,int8,int8-all --batch-sizes 32,64,128

The schemes are timed in turn within each repeat, so that drift of a shared VM falls on all
of them alike. ``int8`` is the library's ``--quantize`` default; ``int8-all`` quantises every
Linear layer; ``int8-ffn`` keeps every feed-forward output projection in fp32. For each int8
scheme the top-1 agreement with fp32 is printed. Writes benchmarks/results/throughput.json.
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
from dualexpert.domain.quantize import KEEP_FP32, quantize_int8  # noqa: E402

SHARED = Path(os.environ.get("DUALEXPERT_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCHEMES: dict[str, str | None] = {
    "int8": KEEP_FP32,
    "int8-all": None,
    "int8-ffn": r"(^|\.)layer\.\d+\.output\.dense$",
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def experts(model: str, schemes: list[str]) -> dict[str, DomainExpert]:
    """One loaded expert per scheme; the int8 ones carry their own quantised copy."""
    out = {}
    for name in schemes:
        expert = DomainExpert.load(model)
        if name != "fp32":
            if name not in SCHEMES:
                raise SystemExit(f"unknown scheme {name!r}; choose fp32 or {', '.join(SCHEMES)}")
            expert.config.quantize = True
            expert._quantized = (expert.model, quantize_int8(expert.model, SCHEMES[name]))
        out[name] = expert
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument(
        "--schemes", default="fp32,int8", help="comma-separated: fp32, " + ", ".join(SCHEMES)
    )
    args = ap.parse_args()
    names = args.schemes.split(",")
    models = experts(args.model, names)
    prods = load_catalogue(SHARED / "mwpd" / "validation.jsonl").products[: args.n]
    top1 = {name: ex.predict(prods) for name, ex in models.items()}  # also the warm-up
    agreement = {
        name: sum(a == b for a, b in zip(top1["fp32"], t, strict=True)) / len(prods)
        for name, t in top1.items()
        if name != "fp32" and "fp32" in top1
    }
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    rates: dict[tuple[str, int], list[float]] = {(s, b): [] for s in names for b in sizes}
    for _ in range(args.repeats):
        for bs in sizes:
            for name, ex in models.items():
                t0 = time.perf_counter()
                ex.predict_topk(prods, k=10, batch_size=bs)
                rates[name, bs].append(len(prods) / (time.perf_counter() - t0))
    rows = [
        {
            "scheme": name,
            "batch_size": bs,
            "median_products_per_second": sorted(rates[name, bs])[args.repeats // 2],
            "all": rates[name, bs],
        }
        for name in names
        for bs in sizes
    ]
    print("| scheme | top-1 agreement | " + " | ".join(f"batch {b}" for b in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for name in names:
        cells = []
        for bs in sizes:
            r = rates[name, bs]
            cells.append(f"{sorted(r)[len(r) // 2]:.0f} ({', '.join(f'{x:.0f}' for x in r)})")
        agree = f"{agreement[name]:.4f}" if name in agreement else "–"
        print(f"| {name} | {agree} | " + " | ".join(cells) + " |")
    out = ROOT / "benchmarks" / "results" / "throughput.json"
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "top1_agreement_with_fp32": agreement,
                "n": len(prods),
                "model": args.model,
                "max_length": models[names[0]].config.max_length,
                "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
                "date": str(date.today()),
                "machine": f"{cpu_name()}, {os.cpu_count()} cores",
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
