"""Relevance learning curve on Home Depot: ROC-AUC against the number of training pairs.

Runs ``benchmarks/relevance.py`` once per size (each in its own folder under ``--out``, so an
interrupted curve resumes where it stopped), then prints one table (rows: systems, columns:
sizes), writes ``curve.json`` and plots ``curve.png``.

    python benchmarks/relevance_curve.py --sizes 250 500 1000 2000 4000 8000 16000 0 \\
        --out benchmarks/results/relevance-curve

Size 0 means every labelled training pair. Cells are means ± 95% intervals (t over training
seeds, or a bootstrap over test pairs for the untrained systems); a cell without one is a single
training seed. Sizes up to ``--seeds-upto`` get ``--seeds``; larger
ones the first seed only. Epochs shrink with the size (``--epoch-pairs`` / size, between 1 and
8), so each trained model sees a similar number of steps. Distilled systems run at the sizes
whose pairs all have a rationale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import relevance as bench

DEFAULT_SYSTEMS = ["lexical_lr", "biencoder", "prior", "cross_encoder", "cross_encoder+prior"]


def epochs_for(size: int, epoch_pairs: int) -> int:
    return max(1, min(8, round(epoch_pairs / size)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000, 0])
    ap.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seeds-upto", type=int, default=1000)
    ap.add_argument("--epoch-pairs", type=int, default=8000)
    ap.add_argument("--rationales", default="runs/relevance/rationales-train.jsonl")
    ap.add_argument("--out", default="benchmarks/results/relevance-curve")
    ap.add_argument("--table-only", action="store_true", help="print what is stored, run nothing")
    args = ap.parse_args()
    out = Path(args.out)
    curve: dict[str, dict[str, dict]] = {}
    for size in args.sizes:
        folder = out / f"n{size or 'all'}"
        if args.table_only:
            f = folder / "results.json"
            res = json.loads(f.read_text()) if f.is_file() else {}
        else:
            run_args = bench.parser().parse_args([])
            run_args.train_size = size or 10**9
            run_args.systems = args.systems
            run_args.seeds = args.seeds if 0 < size <= args.seeds_upto else args.seeds[:1]
            run_args.epochs = epochs_for(size or 60000, args.epoch_pairs)
            run_args.rationales = args.rationales
            run_args.out = str(folder)
            run_args.resume = True
            res = bench.run(run_args)
        n = res.get("setup", {}).get("train", size)
        for name, r in res.items():  # the LLM rows cover a 50-200 pair subset: not a curve
            if name != "setup" and "mean" in r and not name.startswith("llm_"):
                curve.setdefault(name, {})[str(n)] = {
                    "roc_auc": r["mean"]["roc_auc"],
                    "ci95": r.get("ci95", {}).get("roc_auc"),
                    "seeds": len(r.get("runs", {})) or None,
                    "epochs": res["setup"].get("epochs") if r.get("runs") else None,
                }
    print_curve(curve)
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps(curve, indent=2))
    plot(curve, out / "curve.png")


def print_curve(curve: dict[str, dict[str, dict]]) -> None:
    sizes = sorted({int(n) for v in curve.values() for n in v})
    print(f"{'system':24s}" + "".join(f"{n:>16d}" for n in sizes))
    for name, pts in curve.items():
        cells = []
        for n in sizes:
            p = pts.get(str(n))
            if p is None:
                cells.append(f"{'-':>16s}")
                continue
            one_seed = p.get("seeds") == 1  # no interval from one training seed
            ci = f"±{p['ci95']:.3f}" if p.get("ci95") is not None and not one_seed else "      "
            cells.append(f"{p['roc_auc']:>10.4f}{ci}")
        print(f"{name:24s}" + "".join(cells))


def plot(curve: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in curve.items():
        ns = sorted(int(n) for n in pts)
        ys = [pts[str(n)]["roc_auc"] for n in ns]
        err = [pts[str(n)].get("ci95") or 0.0 for n in ns]
        ax.errorbar(ns, ys, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training pairs")
    ax.set_ylabel("ROC-AUC (held-out queries)")
    ax.set_title("Home Depot relevance: learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
