"""The domain expert fused with the lexical expert (issue 17, lever 2), over training seeds.

For each saved model (``runs/<dataset>-domain_expert<tag>-s<seed>/model``, trained by
``benchmarks/domain_expert.py``) it scores, on the same test products:

* the encoder alone (``fuse=False``: the domain expert as it was);
* the lexical expert alone (TF-IDF + linear SVM, saved inside the model folder);
* the shipped fusion, ``softmax(log p + s * margin)`` with ``s`` = ``lexical_weight`` (1) times
  the lexical expert's temperature, calibrated on out-of-fold margins of the training data;
* a sweep of ``s``, and ``s`` chosen by 2-fold cross-fitting on the test products (each half
  scored with the ``s`` that is best on the other half), so the chosen row is honest;
* the shipped fusion with its log-probabilities lowered by ``tau`` times the log of the training
  prior of each leaf (post-hoc logit adjustment, which trades head accuracy for tail recall),
  for a few ``tau`` and ``tau`` cross-fitted on halves by lvl3 macro F1. The "shipped" row is
  the fusion before this adjustment: a model trained with synthetic products ships the
  ``tau`` it was saved with (1 by default), i.e. its "tau 1" row.

* the nearest-neighbour expert (``--neighbours``, the default): the real training products in a
  FAISS index (``dualexpert.indexes.NeighbourIndex``; the model's own, or, for a model trained
  before it existed, built once with the default settings and given to every seed's model, as
  ``train`` builds it), alone and fused on top of the shipped
  fusion at 0.5, 1 (shipped) and 2 times its calibrated scale, with the model's own ``tau``.

``--system`` reads another trained configuration (``runs/<dataset>-<system><tag>-s<seed>``,
e.g. ``no_phase2``).

Prints a table (means with 95% intervals over seeds) and writes JSON.

    python benchmarks/fusion.py --dataset mwpd --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from domain_expert import load_dataset  # noqa: E402

from dualexpert.domain import DomainExpert  # noqa: E402
from dualexpert.evaluation.metrics import categorisation_report, mean_ci  # noqa: E402

# scales on the lexical margins (the shipped one is lexical_weight x calibrated temperature)
WEIGHTS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 16.0)
# factors on the log training prior subtracted from the fused log-probabilities
TAUS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
COLUMNS = ("avg wF1", "lvl3 acc", "lvl3 wF1", "lvl3 mF1", "head mF1", "tail mF1", "routed@0.9")


def scores(expert, proba, test, train_counts) -> dict[str, float]:
    top = np.argsort(-proba, axis=1)[:, :10]
    tax = expert.taxonomy
    pred = [tax.get(expert.classes_[row[0]]).path for row in top]
    ranked = [[tax.get(expert.classes_[j]).path for j in row] for row in top]
    rep = categorisation_report([p.category for p in test], pred, ranked, train_counts)
    levels = [k for k in rep if k.startswith("lvl")]
    return {
        "avg wF1": float(np.mean([rep[k]["f1_weighted"] for k in levels])),
        "lvl3 acc": rep[levels[-1]]["accuracy"],
        "lvl3 wF1": rep[levels[-1]]["f1_weighted"],
        "lvl3 mF1": rep[levels[-1]]["f1_macro"],
        "head mF1": rep.get("leaf_head", {}).get("f1_macro", float("nan")),
        "tail mF1": rep.get("leaf_tail", {}).get("f1_macro", float("nan")),
        "routed@0.9": float((proba.max(axis=1) < 0.9).mean()),
        "top10": rep["leaf"].get("top10_recall", float("nan")),
    }


def cross_fit(
    expert, make, grid, test, counts, seed: int, key: str = "avg wF1"
) -> tuple[np.ndarray, list[float]]:
    """Probabilities where each half of the products uses the setting of ``grid`` that is best
    on the other half (by ``key``); ``make(setting, rows)`` gives the probabilities of ``rows``."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(test))
    halves = [idx[: len(idx) // 2], idx[len(idx) // 2 :]]
    out: np.ndarray | None = None
    chosen = []
    for a, b in ((0, 1), (1, 0)):
        dev = halves[a]
        sub = [test[i] for i in dev]
        best = max(grid, key=lambda g: scores(expert, make(g, dev), sub, counts)[key])
        chosen.append(best)
        got = make(best, halves[b])
        if out is None:
            out = np.zeros((len(test), got.shape[1]), dtype=got.dtype)
        out[halves[b]] = got
    assert out is not None
    return out, chosen


def class_counts(expert, counts: Counter) -> list[int]:
    """Training products per class of ``expert`` (for models saved without their counts)."""
    by_id = Counter()
    for path, n in counts.items():
        by_id[expert.taxonomy.by_path(path).id] += n
    return [by_id.get(k, 0) for k in expert.classes_]


def run_seed(args, seed: int, train, test, counts, neighbours=None) -> tuple[dict, object]:
    """One seed's rows, and the neighbour index it used (for the next seed's model)."""
    folder = ROOT / "runs" / f"{args.dataset}-{args.system}{args.tag}-s{seed}" / "model"
    expert = DomainExpert.load(folder)
    if not args.neighbours:
        expert.neighbours_ = None
    elif expert.neighbours_ is None and neighbours is not None:  # trained before the index
        expert.neighbours_ = neighbours
    elif expert.neighbours_ is None:  # the same, and no other seed's model built one yet
        t0 = time.perf_counter()
        expert.fit_neighbours(train)
        print(f"neighbour index: {time.perf_counter() - t0:.0f} s", flush=True)
    if expert.lexical_ is None:
        raise SystemExit(f"{folder} has no lexical expert: retrain it with this version")
    texts = [p.text() for p in test]
    t0 = time.perf_counter()
    p = expert.encoder_proba(test)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = expert.lexical_margins(texts)
    t_lex = time.perf_counter() - t0
    e = np.exp(m - m.max(axis=1, keepdims=True))
    rows = {
        "domain expert alone (encoder)": scores(expert, p, test, counts),
        "lexical expert alone": scores(expert, e / e.sum(axis=1, keepdims=True), test, counts),
        "fused, shipped (calibrated scale)": scores(
            expert, expert.fuse(p, m, expert.fusion_scale()), test, counts
        ),
    }
    for w in WEIGHTS[1:]:
        rows[f"fused, scale {w:g}"] = scores(expert, expert.fuse(p, m, w), test, counts)
    fused, chosen = cross_fit(
        expert, lambda w, r: expert.fuse(p[r], m[r], w), WEIGHTS, test, counts, seed
    )
    rows["fused, w cross-fitted on halves"] = scores(expert, fused, test, counts)
    shipped = expert.fuse(p, m, expert.fusion_scale())
    if expert.class_counts_ is None:  # saved before the model kept its class counts
        expert.class_counts_ = class_counts(expert, counts)
    for tau in TAUS[1:]:
        rows[f"fused, prior-adjusted tau {tau:g}"] = scores(
            expert, expert.adjust_for_prior(shipped, tau), test, counts
        )
    adjusted, taus = cross_fit(
        expert,
        lambda t, r: expert.adjust_for_prior(shipped[r], t),
        TAUS,
        test,
        counts,
        seed,
        "lvl3 mF1",
    )
    rows["fused, tau cross-fitted on halves (macro F1)"] = scores(expert, adjusted, test, counts)
    n = len(test)
    speed = {"encoder_products_s": n / t_enc, "lexical_products_s": n / t_lex}
    speed["fused_products_s"] = n / (t_enc + t_lex)
    if expert.neighbours_ is not None:
        t0 = time.perf_counter()
        near = expert.neighbour_scores(texts)
        t_near = time.perf_counter() - t0
        e = np.exp(expert.neighbour_scale() * near)
        alone = e / e.sum(axis=1, keepdims=True)
        rows["neighbour expert alone"] = scores(expert, alone, test, counts)
        for w in (0.5, 1.0, 2.0):
            both = expert.fuse(shipped, near, w * expert.neighbour_scale())
            name = "shipped: + neighbours" if w == 1 else f"+ neighbours at {w:g}x their scale"
            rows[name] = scores(expert, expert.adjust_for_prior(both), test, counts)
        speed["neighbour_products_s"] = n / t_near
        speed["with_neighbours_products_s"] = n / (t_enc + t_lex + t_near)
    return {
        "seed": seed,
        "rows": rows,
        "cross_fit_w": chosen,
        "cross_fit_tau": taus,
        "shipped_scale": expert.fusion_scale(),
        "neighbour_scale": expert.neighbour_scale() if expert.neighbours_ is not None else None,
        "shipped_tau": expert.prior_adjustment_,
        "speed": speed,
    }, expert.neighbours_


def summarise(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for name, vals in run["rows"].items():
            for col, v in vals.items():
                out.setdefault(name, {}).setdefault(col, []).append(v)
    return out


def print_table(runs: list[dict], columns: tuple[str, ...] = COLUMNS) -> None:
    summary = summarise(runs)
    print(f"| system ({len(runs)} seeds) | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, cols in summary.items():
        cells = []
        for c in columns:
            mean, half = mean_ci(cols[c])
            cells.append(f"{mean:.4f}" + (f" ± {half:.4f}" if len(cols[c]) > 1 else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mwpd", choices=["mwpd", "bigbasket"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--tag", default="@4ep")
    ap.add_argument("--system", default="domain_expert", help="the trained configuration")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--context",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="MWPD: read the breadcrumb and URL columns (as the models were trained)",
    )
    ap.add_argument(
        "--neighbours",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the nearest-neighbour expert's rows (its index built once, on the real "
        "training products)",
    )
    args = ap.parse_args()
    name = "" if args.system == "domain_expert" else f"-{args.system}"
    results = ROOT / "benchmarks" / "results"
    out = args.out or results / f"fusion-{args.dataset}{name}{args.tag}.json"
    runs = []
    neighbours = None
    for seed in args.seeds:
        train, test = load_dataset(
            args.dataset, seed if args.dataset == "bigbasket" else 0, args.context
        )
        counts = Counter(p.category for p in train)
        if args.dataset == "bigbasket":  # another split each seed: another index
            neighbours = None
        run, neighbours = run_seed(args, seed, train, test, counts, neighbours)
        runs.append(run)
        print(
            f"seed {seed}: cross-fitted w {runs[-1]['cross_fit_w']}, "
            f"tau {runs[-1]['cross_fit_tau']}",
            flush=True,
        )
    print_table(runs)
    write_results(out, args.dataset, runs, len(test))


def write_results(out: Path, dataset: str, runs: list[dict], n_test: int) -> None:
    meta = {
        "date": str(date.today()),
        "machine": f"{os.cpu_count()} CPU cores",
        "command": " ".join(sys.argv),
        "dataset": dataset,
        "n_test": n_test,
    }
    out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
