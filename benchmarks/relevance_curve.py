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

``--also SIZE=FOLDER`` (repeatable) fills the cells of that size that ``--out``'s folder lacks
from another run's ``results.json`` (e.g. a distilled run made by ``relevance.py`` with its own
rationale file); ``curve.json`` records each cell's source folder and epochs.

    python benchmarks/relevance_curve.py --table-only --sizes 250 500 1000 \\
        --out benchmarks/results/relevance-curve-3ep \\
        --also 500=benchmarks/results/relevance-500-rat-h30
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
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="SIZE=FOLDER",
        help="another run's results folder whose rows fill this size's missing cells",
    )
    args = ap.parse_args()
    out = Path(args.out)
    extra = parse_also(args.also)
    curve: dict[str, dict[str, dict]] = {}
    for size in args.sizes:
        folder = out / f"n{size or 'all'}"
        if args.table_only:
            res = load(folder)
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
        sources = [(folder, res)] + [(f, load(f)) for f in extra.get(size, [])]
        n = res.get("setup", {}).get("train", size)
        for src, r_all in sources:
            add_cells(curve, str(r_all.get("setup", {}).get("train", n)), src, r_all)
    print_curve(curve)
    print()
    print_curve(curve, "query_auc")
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps(curve, indent=2))
    plot(curve, out / "curve.png")


def parse_also(items: list[str]) -> dict[int, list[Path]]:
    extra: dict[int, list[Path]] = {}
    for item in items:
        size, sep, folder = item.partition("=")
        if not sep or not size.isdigit() or not (Path(folder) / "results.json").is_file():
            raise SystemExit(f"--also {item!r}: expected SIZE=FOLDER with FOLDER/results.json")
        extra.setdefault(int(size), []).append(Path(folder))
    return extra


def load(folder: Path) -> dict:
    f = folder / "results.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def add_cells(curve: dict[str, dict[str, dict]], n: str, source: Path, res: dict) -> None:
    """Adds each system of one results file at size ``n``; a cell already filled is kept."""
    for name, r in res.items():  # the LLM rows cover a 50-200 pair subset: not a curve
        if name == "setup" or "mean" not in r or name.startswith("llm_"):
            continue
        curve.setdefault(name, {}).setdefault(
            n,
            {
                "roc_auc": r["mean"]["roc_auc"],
                "query_auc": r["mean"].get("query_auc"),
                "ci95": r.get("ci95", {}).get("roc_auc"),
                "seeds": len(r.get("runs", {})) or None,
                "epochs": res["setup"].get("epochs") if r.get("runs") else None,
                "source": str(source),
            },
        )


def print_curve(curve: dict[str, dict[str, dict]], metric: str = "roc_auc") -> None:
    sizes = sorted({int(n) for v in curve.values() for n in v})
    print(f"{metric:32s}" + "".join(f"{n:>16d}" for n in sizes))
    for name, pts in curve.items():
        cells = []
        for n in sizes:
            p = pts.get(str(n))
            if p is None or p.get(metric) is None:
                cells.append(f"{'-':>16s}")
                continue
            one_seed = p.get("seeds") == 1  # no interval from one training seed
            ci = p.get("ci95") if metric == "roc_auc" and not one_seed else None
            ci_text = f"±{ci:.3f}" if ci is not None else "      "
            cells.append(f"{p[metric]:>10.4f}{ci_text}")
        print(f"{name:32s}" + "".join(cells))


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
