"""The README's main job: end to end on the shipped demo catalogue with the embedded defaults.

The catalogue is split once: 70% to train, and the held-out 30% into a dev split (to choose the
fusion weight and the routing threshold, every dev product going through the LLM once) and a
test split (the comparison table). The table compares TF-IDF + a linear model, the domain expert
alone and the dual expert (domain expert + local LLM through :class:`DualExpert` with threshold
routing) on the same test products; the plot shows dev accuracy and LLM traffic against the
threshold (Figure 5).

The demo catalogue is easy: a well-trained domain expert may be confident on every held-out
product, so that the threshold chosen on dev routes nothing. ``llm_products=N`` then routes the
``N`` least-confident test products instead (the threshold is set just above the N-th lowest
confidence), and the result says so; ``llm_products=0`` keeps the dev threshold as is.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .data import load_catalogue
from .evaluation.metrics import categorisation_report

DEMO_CATALOGUE = Path(__file__).with_name("demo") / "catalogue.csv"

#: thresholds of the dev curve, besides the midpoints between the dev products' confidences
_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)


def split_demo(seed: int = 0, test_share: float = 0.3):
    """``(train, held_out)``: a seeded shuffle of the demo catalogue."""
    prods = load_catalogue(DEMO_CATALOGUE).products
    rng = random.Random(seed)
    idx = list(range(len(prods)))
    rng.shuffle(idx)
    cut = int(len(idx) * (1 - test_share))
    return [prods[i] for i in idx[:cut]], [prods[i] for i in idx[cut:]]


def split_demo_dev(seed: int = 0, dev_size: int = 16, test_share: float = 0.3):
    """``(train, dev, test)``: :func:`split_demo`'s held-out part cut into dev and test."""
    train, held = split_demo(seed, test_share)
    if not 0 <= dev_size < len(held):
        raise ValueError(f"dev_size must be in [0, {len(held)})")
    return train, held[:dev_size], held[dev_size:]


def _row(name: str, gold, pred, ranked, train, **extra: Any) -> dict[str, Any]:
    rep = categorisation_report(gold, pred, ranked, Counter(p.category for p in train), ks=(1, 3))
    row = {
        "system": name,
        "lvl3_accuracy": rep["lvl3"]["accuracy"],
        "lvl3_f1_weighted": rep["lvl3"]["f1_weighted"],
        "lvl3_f1_macro": rep["lvl3"]["f1_macro"],
        "top3_recall": rep["leaf"].get("top3_recall"),
        "routed": 0,
        "llm_calls": 0,
        "fixed": None,
        "broken": None,
    }
    row.update(extra)
    return row


def _score(name: str, ranker: Any, train, test, fit_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    topk = ranker.predict_topk(test, k=5)
    pred_s = time.perf_counter() - t0
    return _row(
        name,
        [p.category for p in test],
        [c[0].path for c in topk],
        [[x.path for x in c] for c in topk],
        train,
        fit_seconds=fit_s,
        seconds_per_product=pred_s / len(test),
        products_per_second=len(test) / pred_s if pred_s else 0.0,
    )


def _curve_thresholds(probabilities: list[float]) -> list[float]:
    """The grid plus a threshold between each pair of neighbouring dev confidences, in (0, 1),
    and one above 1 when a confidence is exactly 1 (the fused experts can saturate float32), so
    that the curve always ends with every product routed."""
    ps = sorted(probabilities)
    mids = [(a + b) / 2 for a, b in zip(ps, ps[1:], strict=False) if b > a]
    hi = 1.001 if ps and ps[-1] >= 1.0 else math.nextafter(1.0, 0.0)
    return sorted({min(round(t, 9), hi) for t in (*_GRID, *mids, ps[-1] if ps else 0.5)} | {hi})


def _route_least_confident(probabilities: list[float], n: int) -> float:
    """A threshold that routes the ``n`` least-confident products (more on exact ties)."""
    ps = sorted(probabilities)
    if n >= len(ps):
        return 1.001
    if ps[n] > ps[n - 1]:  # halfway: robust to float noise between batched and single passes
        return (ps[n - 1] + ps[n]) / 2
    return math.nextafter(ps[n - 1], math.inf)


def _parse_weight(fusion_weight: str | float | None, lm: Any) -> tuple[bool, float | None]:
    """``(on_dev, weight)``: ``"dev"`` is chosen on the dev products; anything else is what
    ``classify`` does with the LLM ``lm`` (``"auto"``, ``"none"``/``"pick"``, a number)."""
    from .pipeline import resolve_fusion_weight

    if fusion_weight == "dev":
        return True, None
    return False, resolve_fusion_weight(fusion_weight, reranker=False, lm=lm)


def run_demo(
    out_dir: str | Path = "runs/demo",
    epochs: float = 4.0,
    seed: int = 0,
    use_llm: bool = True,
    llm: str | None = None,
    strategy: str = "score",
    k: int = 5,
    dev_size: int = 16,
    llm_products: int = 12,
    fusion_weight: str | float | None = "dev",
    max_traffic: float = 1.0,
    llm_threads: int | None = None,
) -> dict:
    """Train the domain expert on 70% of the demo catalogue; compare TF-IDF, the domain expert
    and (``use_llm``) the dual expert with the local LLM ``llm`` (default Qwen2.5-Coder-1.5B).

    Writes ``demo.json``, the dual runs ``dev-run.jsonl`` / ``test-run.jsonl`` and the plot
    ``threshold.png`` to ``out_dir``. ``strategy``: the general expert's prompt strategy
    (``score``, the LLM's probabilities over the candidates, is one forward pass per product;
    ``zero_shot``, ``rank`` and ``cot_rank`` generate text and are several times slower).
    ``fusion_weight``: ``"dev"`` (chosen on the dev products), ``"auto"`` (``classify``'s rule
    for this LLM), ``"none"`` (the LLM's pick as is) or a number.
    """
    from .domain import DomainExpert
    from .evaluation.baselines import TfidfLinearRanker

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if use_llm and dev_size < 1:
        raise ValueError("the LLM path needs a dev split: dev_size >= 1")
    if use_llm and fusion_weight != "dev":  # a bad value fails here, not after training
        from .pipeline import resolve_fusion_weight

        try:
            resolve_fusion_weight(fusion_weight, reranker=True)
        except ValueError:
            raise ValueError(
                f"fusion weight must be dev, auto, none or a number, not {fusion_weight!r}"
            ) from None
    # without the LLM no dev split is needed: the test split is the whole held-out part
    train, dev, test = split_demo_dev(seed, dev_size if use_llm else 0)
    rows = []
    t0 = time.perf_counter()
    tfidf = TfidfLinearRanker().fit(train)
    rows.append(_score("tfidf_linear", tfidf, train, test, time.perf_counter() - t0))
    expert = DomainExpert(
        epochs=epochs, batch_size=16, learning_rate=2e-4, seed=seed, save_steps=50, logging_steps=10
    )
    t0 = time.perf_counter()
    expert.fit(train, output_dir=out / "checkpoints")
    fit_s = time.perf_counter() - t0
    expert.save(out / "domain-expert")
    rows.append(_score("domain_expert", expert, train, test, fit_s))
    result: dict[str, Any] = {
        "n_train": len(train),
        "n_dev": len(dev),
        "n_test": len(test),
        "seed": seed,
        "rows": rows,
        "notes": [],
    }
    if use_llm:
        result["llm"] = _run_llm(
            expert, train, dev, test, out, rows, result["notes"],
            llm=llm, strategy=strategy, k=k, llm_products=llm_products,
            fusion_weight=fusion_weight, max_traffic=max_traffic, llm_threads=llm_threads,
        )  # fmt: skip
        result["plot"] = str(out / "threshold.png")
    else:
        result["notes"].append("--no-llm: the domain expert and TF-IDF only; no plot")
    result["total_seconds"] = time.perf_counter() - started
    (out / "demo.json").write_text(json.dumps(result, indent=1))
    return result


def _run_llm(
    expert,
    train,
    dev,
    test,
    out: Path,
    rows: list[dict[str, Any]],
    notes: list[str],
    *,
    llm: str | None,
    strategy: str,
    k: int,
    llm_products: int,
    fusion_weight: str | float | None,
    max_traffic: float,
    llm_threads: int | None,
) -> dict[str, Any]:
    import dspy

    from .batch import classify_products
    from .evaluation.dual import labelled_records, summarise_records
    from .evaluation.routing import (
        choose_fusion_weight,
        choose_threshold,
        plot_curve,
        threshold_curve,
    )
    from .general import GeneralExpert
    from .lm import DEFAULT_LLM, get_lm
    from .pipeline import DualExpert

    # No DSPy cache: the seconds per product in the table are those of real LLM calls.
    engine_kw = {"n_threads": llm_threads} if llm_threads else {}
    t0 = time.perf_counter()
    lm = get_lm(llm, cache=False, **engine_kw)
    if hasattr(getattr(lm, "engine", None), "start"):
        lm.engine.start()  # load (and on first use assemble) the model now
    load_s = time.perf_counter() - t0
    general = GeneralExpert(strategy)
    for name in ("dev-run.jsonl", "test-run.jsonl"):  # a demo run starts afresh
        (out / name).unlink(missing_ok=True)

    with dspy.context(lm=lm, track_usage=True):
        # 1. dev: every product through the LLM once, then any threshold / weight is scored
        de = DualExpert(expert, general, k=k, threshold=1.01)
        classify_products(de, dev, out / "dev-run.jsonl")
        dev_recs = labelled_records(out / "dev-run.jsonl")
        auto, weight = _parse_weight(fusion_weight, lm)
        weight_scores: dict[str, float] = {}
        if auto:
            weight, weight_scores = choose_fusion_weight(dev_recs)
        curve = threshold_curve(
            dev_recs,
            _curve_thresholds([r["candidates"][0]["probability"] for r in dev_recs]),
            weight=weight,
        )
        cap = max_traffic if not llm_products else min(max_traffic, llm_products / len(test))
        best = choose_threshold(curve, cap)
        plot_curve(
            curve,
            out / "threshold.png",
            title=f"demo dev split ({len(dev)} products): accuracy and LLM traffic",
            xscale="logit",
        )

        # 2. test: threshold routing with the dev choices
        probs = [c[0].probability for c in expert.predict_topk(test, k=1)]
        threshold = best["threshold"]
        by_dev = sum(p < threshold for p in probs)
        forced = bool(llm_products) and by_dev != min(llm_products, len(test))
        if forced:
            threshold = _route_least_confident(probs, llm_products)
            notes.append(
                f"the threshold chosen on dev ({best['threshold']:.6g}) routes {by_dev} of "
                f"{len(test)} test products; to show the LLM at work the demo routes the "
                f"{llm_products} least-confident instead (threshold {threshold:.6g}; "
                "--llm-products 0 keeps the dev threshold)"
            )
        de = DualExpert(expert, general, k=k, threshold=threshold, fusion_weight=weight)
        t0 = time.perf_counter()
        classify_products(de, test, out / "test-run.jsonl")
        dual_s = time.perf_counter() - t0
    recs = labelled_records(out / "test-run.jsonl")
    summary = summarise_records(recs)
    routed = [r for r in recs if r["routed"]]
    rows.append(
        _row(
            "dual_expert",
            [tuple(r["gold"]) for r in recs],
            [tuple(r["path"]) for r in recs],
            None,
            train,
            routed=summary["routed"],
            llm_calls=sum(r["usage"]["llm_calls"] for r in recs),
            fixed=summary["fixed"],
            broken=summary["broken"],
            routed_dual_accuracy=summary["routed_dual_accuracy"],
            routed_domain_accuracy=summary["routed_domain_accuracy"],
            fallback=summary["fallback"],
            seconds_per_product=dual_s / len(recs),
            llm_seconds_per_routed=(
                sum(r["seconds"] for r in routed) / len(routed) if routed else 0.0
            ),
        )
    )
    notes.append(
        f"LLM {llm or DEFAULT_LLM} ({strategy}, top-{k} candidates), fusion weight "
        f"{'the LLM pick as is' if weight is None else weight}"
        f"{' (chosen on dev)' if auto else ''}; dev threshold {best['threshold']:.6g} "
        f"(dev accuracy {best['accuracy']:.3f}, LLM traffic {best['llm_traffic']:.0%})"
    )
    if not routed:
        notes.append("no test product was routed: the dual expert is the domain expert here")
    else:
        notes.append(
            f"on the {len(routed)} routed test products: dual {summary['routed_dual_accuracy']:.3f}"
            f" vs domain expert {summary['routed_domain_accuracy']:.3f}"
        )
    return {
        "model": llm or DEFAULT_LLM,
        "strategy": strategy,
        "k": k,
        "load_seconds": load_s,
        "fusion_weight": weight,
        "fusion_weight_chosen_on_dev": auto,
        "fusion_weight_scores": weight_scores,
        "dev_threshold": best["threshold"],
        "dev_choice": best,
        "test_threshold": threshold,
        "routed_by_dev_threshold": by_dev,
        "forced_routing": forced,
        "llm_products": llm_products,
        "curve": curve,
    }


def demo_table(result: dict[str, Any]):
    """The comparison table (a ``rich`` Table)."""
    from rich.table import Table

    table = Table(
        title=f"demo catalogue: {result['n_train']} train / {result['n_dev']} dev / "
        f"{result['n_test']} test products"
    )
    cols = [
        ("accuracy", "lvl3_accuracy", "{:.3f}"),
        ("weighted F1", "lvl3_f1_weighted", "{:.3f}"),
        ("macro F1", "lvl3_f1_macro", "{:.3f}"),
        ("routed", "routed", "{}"),
        ("LLM calls", "llm_calls", "{}"),
        ("s/product", "seconds_per_product", "{:.3f}"),
        ("fixed", "fixed", "{}"),
        ("broken", "broken", "{}"),
    ]
    table.add_column("system", no_wrap=True)
    for head, _, _ in cols:
        table.add_column(head, justify="right", no_wrap=True)
    names = {
        "tfidf_linear": "TF-IDF + linear",
        "domain_expert": "domain expert",
        "dual_expert": "dual expert",
    }
    for r in result["rows"]:
        table.add_row(
            names.get(r["system"], r["system"]),
            *("-" if r.get(key) is None else fmt.format(r[key]) for _, key, fmt in cols),
        )
    return table
