"""One table per data set from the saved categorisation results (issue 17's report).

It trains and asks nothing: each row is read from a results file that another benchmark wrote
(named in the row's ``source``), so the table can be rebuilt at any time and says where every
number comes from. Rows of trained systems are means over the training seeds in that file, with
the 95% t-interval half-width when there are several; ``seeds`` says how many. All rows of a
data set are on the same validation products (MWPD: the 3,000 of ``validation.jsonl``;
BigBasket: the 20% held out by each seed's split), except where ``note`` says otherwise.

    python benchmarks/categorisation_report.py            # prints, writes results/report.json
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import date
from pathlib import Path
from statistics import mean, stdev
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("lvl3 acc", "lvl3 wF1", "lvl3 mF1", "head mF1", "tail mF1", "avg wF1")
# two-sided 95% t quantiles by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _agg(values: list[float]) -> tuple[float, float | None]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, None
    if len(values) < 2:
        return values[0], None
    return mean(values), T95.get(len(values) - 1, 2.0) * stdev(values) / math.sqrt(len(values))


def _seed_suffix(seed: int) -> str:
    """domain_expert.py names seed 42's result without a suffix, the others ``-s<seed>``."""
    return "" if seed == 42 else f"-s{seed}"


def seed_rows(files: list[str], row: str) -> list[dict[str, float]]:
    """``row`` of every seed in the ``runs`` of ``files`` (fusion.py / reranker.py results)."""
    out = []
    for name in files:
        data = _load(name)
        for run in (data or {}).get("runs", []):
            if row in run["rows"]:
                out.append(run["rows"][row])
    return out


def from_report(name: str) -> list[dict[str, float]]:
    """A domain_expert.py result (one system, one seed) in the table's columns."""
    data = _load(name)
    if data is None:
        return []
    levels = [k for k in data if k.startswith("lvl")]
    return [
        {
            "lvl3 acc": data[levels[-1]]["accuracy"],
            "lvl3 wF1": data[levels[-1]]["f1_weighted"],
            "lvl3 mF1": data[levels[-1]]["f1_macro"],
            "head mF1": data.get("leaf_head", {}).get("f1_macro", math.nan),
            "tail mF1": data.get("leaf_tail", {}).get("f1_macro", math.nan),
            "avg wF1": mean(data[k]["f1_weighted"] for k in levels),
        }
    ]


def row(name: str, runs: list[dict[str, float]], source: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"system": name, "seeds": len(runs), "source": source}
    for c in COLUMNS:
        m, half = _agg([r.get(c, math.nan) for r in runs])
        out[c] = m
        out[f"{c} ±"] = half
    return out | extra


def _speed(files: list[str], key: str) -> float | None:
    vals = [r["speed"][key] for f in files for r in (_load(f) or {}).get("runs", [])
            if isinstance(r.get("speed"), dict) and key in r["speed"]]  # fmt: skip
    return mean(vals) if vals else None


def _speed_of(name: str) -> float | None:
    data = _load(name)
    return data["timing"]["products_per_second"] if data and "timing" in data else None


def _mean_speed(names: list[str]) -> float | None:
    """Mean products/s of the domain_expert.py results ``names`` that have a timing."""
    vals = [v for n in names if (v := _speed_of(n))]
    return mean(vals) if vals else None


def _fit_minutes(names: list[str]) -> float | None:
    vals = [d["timing"]["fit_seconds"] / 60 for n in names if (d := _load(n)) and "timing" in d]
    return mean(vals) if vals else None


def _with_llm(tier_speed: float, calls: float, seconds: float) -> float:
    """Products/s of the whole system: the tier's rate, plus every routed product asked (``calls``
    a product), one call at a time at the measured ``seconds`` a call."""
    return 1 / (1 / tier_speed + calls * seconds)


def paired(a: list[dict[str, float]], b: list[dict[str, float]], cols: tuple[str, ...]) -> str:
    """``a`` minus ``b`` in points, seed by seed (the lists in the same seed order), as
    ``col mean ± 95% half-width`` for each of ``cols``."""
    if not a or len(a) != len(b):
        return "not paired"
    return "; ".join(
        f"{c} {m:+.2f}" + (f" ± {h:.2f}" if h is not None else "")
        for c in cols
        for m, h in [_agg([100 * (x[c] - y[c]) for x, y in zip(a, b, strict=True)])]
    )


def llm_rows(
    dataset: str,
    specs: tuple[tuple[str, tuple[int, ...], str, str], ...],
    strategy: str = "zero_shot",
    base_speed: float | None = None,
) -> list[dict[str, Any]]:
    """Rows from disagreement.py results: ``(model tag, seeds, its row, label)`` each.

    With ``base_speed`` (the domain tier's products/s) and the LLM calls timed, products/s is
    that of the whole system: every routed product (not only the asked ones) at the measured
    seconds a call, one call at a time."""
    name = "disagreement/disagreement-{}-{}-s{}-k5-confidence-" + strategy + ".json"
    rows = []
    for model, seeds, variant, label in specs:
        found = [(s, n, d) for s in seeds if (d := _load(n := name.format(dataset, model, s)))]
        if found:
            metas = [d["meta"] for *_, d in found]
            names = ", ".join(n for _, n, _ in found)
            asked = ", ".join(f"{m['asked']} of {m['routed']}" for m in metas)
            calls = mean(m["llm_calls_per_product_all_routed"] for m in metas)
            secs = [m["llm_seconds_per_asked"] for m in metas if m.get("llm_seconds_per_asked")]
            speed = None
            if base_speed and len(secs) == len(metas):
                speed = _with_llm(base_speed, calls, mean(secs))
            rows.append(
                row(label, [d["rows"][variant] for *_, d in found], names,
                    llm_calls=calls, products_s=speed,
                    note=f"seed{'s' * (len(found) > 1)} {', '.join(str(s) for s, *_ in found)}; "
                    f"the LLM asked about {asked} routed products, the rest keep the domain "
                    "tier's answer")
            )  # fmt: skip
    return rows


def rationale_rows(dataset: str, size: int = 800) -> list[dict[str, Any]]:
    """Lever 1's rationale variant (reranker.py ``--rtag @<size>``, ``@<size>rat`` and
    ``@<size>rat-nowarm``): the same reranker, trained on the ``size`` hardest products by seed,
    without and with LLM rationales, over one domain tier; and that domain tier alone, on the
    same products."""
    variant = "dual, reranker K=5, p<0.9, fused w=1"
    rows = []
    for rtag, label in (
        ("", "without rationales"),
        ("rat", "with LLM rationales (aux decoder, warm-up)"),
        ("rat-nowarm", "with LLM rationales (aux decoder, no warm-up)"),
    ):
        name = f"reranker-{dataset}@{size}{rtag}.json"
        data = _load(name)
        if data is None:
            continue
        runs = data["runs"]
        if not rows:
            rows.append(row(
                f"domain tier of the next rows (seed {runs[0]['domain_seed']})",
                [runs[0]["rows"]["domain expert, shipped (encoder + lexical)"]], name,
                llm_calls=0.0))  # fmt: skip
        fits = [r["fit_minutes"] for r in runs if r.get("fit_minutes")]
        rows.append(row(
            f"lever 1, reranker on its {size} hardest products, {label}; p < 0.9, K=5, w=1",
            [r["rows"][variant] for r in runs], name, llm_calls=0.0,
            train_min=mean(fits) if fits else None,
            note=f"reranker seeds {', '.join(str(r['seed']) for r in runs)}"
            + ("; + the LLM's time writing the rationales" if rtag else "")))  # fmt: skip
    return rows


def _gain(rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    """An LLM row's paired difference from the domain tier alone, and its fixed and broken."""
    return (
        paired(rows, base, ("lvl3 wF1", "lvl3 mF1", "lvl3 acc"))
        + f"; {sum(r['fixed'] for r in rows)} fixed, {sum(r['broken'] for r in rows)} broken"
    )


def channel_rows(
    dataset: str, model: str, seeds: tuple[int, ...], shipped_model: bool = True
) -> list[dict[str, Any]]:
    """The ``channel`` strategy (the default with the bundled LLM) on ``model``'s seeds: the
    domain tier alone, the channel's pick alone (below the first threshold measured), fused at
    ``CHANNEL_FUSION_WEIGHT`` on every product below 0.9 (session 34) and below
    ``CHANNEL_THRESHOLD`` (session 35's default), each fused row with its paired difference
    from the domain tier alone. ``shipped_model``: whether ``model`` is the one the default
    rows name (otherwise the fused rows are called by their rule alone)."""
    name = "disagreement/disagreement-{}-{}-s{}-k5-confidence-channel{}.json"
    alone, shipped = "domain expert, shipped (fused), no LLM", "fused with the LLM, w=0.3"
    rows = []
    for suffix, below in (("", 0.9), ("-t0.8", 0.8)):
        found = {s: d for s in seeds if (d := _load(name.format(dataset, model, s, suffix)))}
        if not found:
            continue
        base = [d["rows"][alone] for d in found.values()]
        fused = [d["rows"][shipped] for d in found.values()]
        calls = mean(d["meta"]["llm_calls_per_product_all_routed"] for d in found.values())
        secs = [d["meta"]["llm_seconds_per_asked"] for d in found.values()]
        src = name.format(dataset, model, "*", suffix)
        used = f"seeds {', '.join(map(str, found))}"
        if not rows:  # the tier alone and the channel's pick alone, below the first threshold
            rows.append(row(f"{model}: the domain tier alone (no synthetic, tau 0)", base, src,
                            llm_calls=0.0, note=f"{used}; the same products"))  # fmt: skip
            rows.append(row(
                f"{model}: + local LLM channel on p < {below:g}, its pick alone",
                [d["rows"]["LLM pick alone"] for d in found.values()], src, llm_calls=calls,
                note=f"{mean(x for x in secs if x):.1f} s a routed product"))  # fmt: skip
        label = "session 35's default, names alone" if below == 0.8 else "session 34's default"
        if not shipped_model:
            label = "the default rule"
        rows.append(row(
            f"**{model}: + local LLM channel on p < {below:g}, fused at 0.3 ({label})**",
            fused, src, llm_calls=calls,
            note="minus the domain tier alone, points (paired by seed): "
            + _gain(fused, base)))  # fmt: skip
    # the paper's zero_shot on the same products below 0.8 (its pick as is)
    zs = "disagreement/disagreement-{}-{}-s{}-k5-confidence-zero_shot-t0.8.json"
    found = {s: d for s in seeds if (d := _load(zs.format(dataset, model, s)))}
    if found:
        picks = [d["rows"]["LLM pick alone"] for d in found.values()]
        base = [d["rows"][alone] for d in found.values()]
        secs = [d["meta"]["llm_seconds_per_asked"] for d in found.values()]
        rows.append(row(
            f"{model}: + local LLM zero_shot on p < 0.8, its pick as is (the paper)", picks,
            zs.format(dataset, model, "*"),
            llm_calls=mean(d["meta"]["llm_calls_per_product_all_routed"] for d in found.values()),
            note=f"seeds {', '.join(map(str, found))}; the same products as the row above; "
            f"{mean(x for x in secs if x):.1f} s a routed product; minus the domain tier alone: "
            + _gain(picks, base)))  # fmt: skip
    return rows


def examples_rows(dataset: str, model: str, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """Session 39: the ``channel`` strategy reading, under each candidate's name, the two
    training products of that category nearest to the product (the ``examples``
    representation, the default since), below 0.8, fused at 0.3: its pick alone and the fused
    row, paired against the domain tier alone and against names alone on the same products."""
    name = "disagreement/disagreement-{}-{}-s{}-k5-confidence-channel{}-t0.8.json"
    ex = {s: d for s in seeds if (d := _load(name.format(dataset, model, s, "-ex2")))}
    if not ex:
        return []
    alone, shipped = "domain expert, shipped (fused), no LLM", "fused with the LLM, w=0.3"
    base = [d["rows"][alone] for d in ex.values()]
    fused = [d["rows"][shipped] for d in ex.values()]
    plain = [_load(name.format(dataset, model, s, "")) for s in ex]
    names = [d["rows"][shipped] for d in plain if d]
    calls = mean(d["meta"]["llm_calls_per_product_all_routed"] for d in ex.values())
    secs = mean(d["meta"]["llm_seconds_per_asked"] for d in ex.values())
    src = name.format(dataset, model, "*", "-ex2")
    used = f"seeds {', '.join(map(str, ex))}"
    vs_names = ""
    if len(names) == len(fused):
        vs_names = "; minus names alone (the row above): " + _gain(fused, names).split(";")[0]
    return [
        row(f"{model}: + local LLM channel with 2 examples a candidate on p < 0.8, its pick alone",
            [d["rows"]["LLM pick alone"] for d in ex.values()], src, llm_calls=calls,
            note=f"{used}; {secs:.1f} s a routed product"),
        row(f"**{model}: + local LLM channel with 2 examples a candidate on p < 0.8, fused at "
            "0.3 (the default now)**", fused, src, llm_calls=calls,
            note="minus the domain tier alone, points (paired by seed): " + _gain(fused, base)
            + vs_names),
    ]  # fmt: skip


def strategy_rows(
    dataset: str, model: str, seed: int, prefix: str, base_speed: float | None, fit: str
) -> list[dict[str, Any]]:
    """The paper's three prompt strategies on the same routed products of one model: its
    domain tier alone, then each strategy's pick as is and rank-fused at 0.25."""
    alone = "domain expert, shipped (fused), no LLM"
    base = llm_rows(dataset, ((model, (seed,), alone, f"{prefix}: the domain tier alone"),))
    alone_cells = {
        "products_s": base_speed,
        "llm_calls": 0.0,
        "note": f"seed {seed}; the same products",
    }
    rows = [r | alone_cells for r in base]
    for strategy in ("zero_shot", "rank", "cot_rank"):
        rows += llm_rows(dataset, (
            (model, (seed,), "LLM pick alone",
             f"{prefix}: + LLM {strategy} on p < 0.9, its pick as is (the paper)"),
            (model, (seed,), "fused with the LLM, w=0.25",
             f"{prefix}: + LLM {strategy} on p < 0.9, rank-fused at 0.25 (the default's way)"),
        ), strategy, base_speed)  # fmt: skip
    fit_min = _fit_minutes([fit])
    return [r | {"train_min": fit_min} for r in rows]


def mwpd() -> list[dict[str, Any]]:
    default, syn = ["fusion-mwpd@4ep.json"], ["fusion-mwpd@4ep-syn.json"]
    no_p2 = ["fusion-mwpd-no_phase2@4ep.json"]
    len64 = ["fusion-mwpd@4ep-syn-len64.json"]
    len64_fits = [f"mwpd/domain_expert@4ep-syn-len64{s}.json" for s in ("", "-s43")]
    syn_fits = [f"mwpd/domain_expert@4ep-syn{s}.json" for s in ("", "-s43", "-s44")]
    no_p2_fits = ["mwpd/no_phase2@4ep.json", "mwpd/no_phase2@4ep-s43.json"]
    enc_speed, fused_speed = (
        _speed(default, "encoder_products_s"),
        _speed(default, "fused_products_s"),
    )
    rows = [
        row("TF-IDF + LinearSVC (baseline)", from_report("mwpd/tfidf_linear.json"),
            "mwpd/tfidf_linear.json", llm_calls=0.0, products_s=_speed_of("mwpd/tfidf_linear.json"),
            train_min=_fit_minutes(["mwpd/tfidf_linear.json"])),
        row("domain expert alone (encoder, 4 epochs)", seed_rows(default,
            "domain expert alone (encoder)"), default[0], llm_calls=0.0, products_s=enc_speed,
            train_min=_fit_minutes(["mwpd/domain_expert@4ep.json"])),
        row("lever 2: + lexical expert fused (shipped until session 16)", seed_rows(default,
            "fused, shipped (calibrated scale)"), default[0], llm_calls=0.0,
            products_s=fused_speed, train_min=_fit_minutes(["mwpd/domain_expert@4ep.json"])),
        row("lever 3a alone: encoder + synthetic products", seed_rows(syn,
            "domain expert alone (encoder)"), syn[0], llm_calls=0.0, products_s=enc_speed,
            train_min=_fit_minutes(syn_fits)),
        row("lever 2 + 3a: fused, + synthetic products, tau 0", seed_rows(syn,
            "fused, shipped (calibrated scale)"), syn[0], llm_calls=0.0, products_s=fused_speed,
            train_min=_fit_minutes(syn_fits)),
        row("lever 2 + prior adjustment tau 1, no synthetic (phase-2-off models)", seed_rows(
            no_p2, "fused, prior-adjusted tau 1"), no_p2[0], llm_calls=0.0,
            products_s=fused_speed, train_min=_fit_minutes(no_p2_fits)),
        row("lever 5: phase 2 off, fused", seed_rows(no_p2, "fused, shipped (calibrated scale)"),
            no_p2[0], llm_calls=0.0, products_s=fused_speed, train_min=_fit_minutes(no_p2_fits)),
        row("levers 2 + 3a + tau 1: session 17's default domain tier", seed_rows(syn,
            "fused, prior-adjusted tau 1"), syn[0], llm_calls=0.0, products_s=fused_speed,
            train_min=_fit_minutes(syn_fits), note="+ 20 min of the LLM writing titles"),
        row("lever 5: the default tier reading 64 tokens instead of 32", seed_rows(len64,
            "fused, prior-adjusted tau 1"), len64[0], llm_calls=0.0, train_min=_fit_minutes(
            len64_fits), note="seeds 42, 43; fit minutes at one thread beside other jobs"),
        row("lever 1: + cross-encoder reranker on p < 0.9, K=5, w=1", seed_rows(
            ["reranker-mwpd.json"], "dual, reranker K=5, p<0.9, fused w=1"),
            "reranker-mwpd.json", llm_calls=0.0, note="routed products at ~2 products/s"),
    ]  # fmt: skip
    rows += llm_rows("mwpd", (
        ("no_phase2@4ep", (42,), "LLM pick alone",
         "+ LLM zero_shot on p < 0.9, its pick as is (the paper; phase-2-off model)"),
        ("domain_expert@4ep-syn", (42, 43), "LLM pick alone",
         "default domain tier + LLM zero_shot on p < 0.9, its pick as is (the paper)"),
        ("domain_expert@4ep-syn", (42, 43), "fused with the LLM, w=0.25",
         "session 17's default + local LLM zero_shot on p < 0.9, rank-fused at 0.25"),
    ))  # fmt: skip
    rows += current_mwpd()
    rows += channel_rows("mwpd", "domain_expert@4ep-ctx-nn", (42, 43, 44))
    rows += examples_rows("mwpd", "domain_expert@4ep-ctx-nn", (42, 43, 44))
    # session 38: the same rule on the tier trained with the LLM's summaries (both uses)
    rows += channel_rows(
        "mwpd", "domain_expert@4ep-ctx-nn-sumboth", (42, 43, 44), shipped_model=False
    )
    rows += label_summary_rows()
    rows += shipped_rows()
    rows += hosted_rule_rows()
    rows += rationale_rows("mwpd")
    rows += strategy_rows(
        "mwpd",
        "domain_expert@4ep-syn",
        42,
        "seed 42 (session 22's model)",
        fused_speed,
        "mwpd/domain_expert@4ep-syn-s42-session22.json",
    )
    return rows


def current_mwpd() -> list[dict[str, Any]]:
    """Sessions 24-30: the shop's breadcrumb and URL as input (context), the default of
    session 29 (context + synthetic products + tau 1) and of session 30 (+ the neighbour index),
    and mpnet as the encoder or as a teacher (one seed). ``@4ep-ctx`` is the bars' baseline:
    the domain expert alone, reading the same products (with context), no synthetic."""
    ctx, syn_ctx = ["fusion-mwpd@4ep-ctx.json"], ["fusion-mwpd@4ep-syn-ctx.json"]
    nn = ["fusion-mwpd@4ep-syn-ctx-nn.json"]
    if not (_load(ctx[0]) and _load(nn[0])):
        return []
    ctx_fits = [f"mwpd/domain_expert@4ep-ctx{_seed_suffix(s)}.json" for s in (42, 43, 44)]
    syn_fits = [f"mwpd/domain_expert@4ep-syn-ctx{_seed_suffix(s)}.json" for s in (42, 43, 44)]
    alone = seed_rows(ctx, "domain expert alone (encoder)")
    shipped = seed_rows(nn, "shipped: + neighbours")
    speed = _speed(nn, "with_neighbours_products_s")
    rows = [
        row("TF-IDF + LinearSVC, with context", from_report("mwpd/tfidf_linear@ctx.json"),
            "mwpd/tfidf_linear@ctx.json", llm_calls=0.0,
            products_s=_speed_of("mwpd/tfidf_linear@ctx.json"),
            train_min=_fit_minutes(["mwpd/tfidf_linear@ctx.json"])),
        row("with context: domain expert alone (encoder; the bars' baseline)", alone, ctx[0],
            llm_calls=0.0, products_s=_speed(ctx, "encoder_products_s"),
            train_min=_fit_minutes(ctx_fits)),
        row("with context: + lexical expert fused", seed_rows(ctx,
            "fused, shipped (calibrated scale)"), ctx[0], llm_calls=0.0,
            products_s=_speed(ctx, "fused_products_s"), train_min=_fit_minutes(ctx_fits)),
        row("with context: + synthetic products, fused, tau 1 (session 29's default)",
            seed_rows(syn_ctx, "fused, prior-adjusted tau 1"), syn_ctx[0], llm_calls=0.0,
            products_s=_speed(syn_ctx, "fused_products_s"), train_min=_fit_minutes(syn_fits),
            note="+ the LLM writing titles for rare leaves"),
        row("neighbour index alone (un-fine-tuned MiniLM, 64 tokens)", seed_rows(nn,
            "neighbour expert alone"), nn[0], llm_calls=0.0,
            products_s=_speed(nn, "neighbour_products_s"),
            note="the same index for every seed: it does not depend on the training seed"),
        row("**the default tier now: context + synthetic + lexical + neighbours, tau 1**",
            shipped, nn[0], llm_calls=0.0, products_s=speed, train_min=_fit_minutes(syn_fits),
            note="minus the encoder alone, points (paired by seed): "
            + paired(shipped, alone, ("lvl3 wF1", "lvl3 mF1", "lvl3 acc"))
            + f"; routed under 0.9: {mean(r['routed@0.9'] for r in shipped):.3f}"),
    ]  # fmt: skip
    rows += llm_rows("mwpd", (
        ("domain_expert@4ep-syn-ctx-nn", (42,), "LLM pick alone",
         "the default tier now + LLM zero_shot on p < 0.9, its pick as is (the paper)"),
        ("domain_expert@4ep-syn-ctx-nn", (42,), "fused with the LLM, w=0.25",
         "**the default as shipped now: + local LLM zero_shot on p < 0.9, rank-fused at 0.25**"),
    ), base_speed=speed)  # fmt: skip
    for tag, label in (
        ("@mpnet", "mpnet as the encoder"),
        ("@4ep-kd-mpnet", "MiniLM distilled from mpnet (w 0.5, T 2)"),
    ):
        name = f"fusion-mwpd{tag}.json"
        if _load(name):
            fits = [f"mwpd/domain_expert{tag}.json"]
            rows += [
                row(f"{label}, encoder alone, no context", seed_rows([name],
                    "domain expert alone (encoder)"), name, llm_calls=0.0,
                    products_s=_speed([name], "encoder_products_s"), train_min=_fit_minutes(fits)),
                row(f"{label}, + lexical expert fused, no context", seed_rows([name],
                    "fused, shipped (calibrated scale)"), name, llm_calls=0.0,
                    products_s=_speed([name], "fused_products_s"), train_min=_fit_minutes(fits)),
            ]  # fmt: skip
    return rows


# the default as shipped's channel runs: dataset, model, seed ("*" in a row's source)
SHIPPED_CHANNEL = "disagreement/disagreement-{}-{}-s{}-k5-confidence-channel-ex2-t0.8.json"


def _shipped_channel(
    dataset: str, model: str, seeds: list[int] | tuple[int, ...]
) -> tuple[dict[int, dict[str, Any]], float, float]:
    """The default as shipped's channel runs (2 examples a candidate, below 0.8) of ``model``'s
    ``seeds``: :func:`_llm_runs`."""
    return _llm_runs([SHIPPED_CHANNEL.format(dataset, model, s) for s in seeds], seeds)


def _llm_runs(
    names: list[str], seeds: list[int] | tuple[int, ...]
) -> tuple[dict[int, dict[str, Any]], float, float]:
    """The disagreement.py results ``names`` (one a seed of ``seeds``) that exist, by seed, with
    their mean LLM calls a product and seconds a call."""
    found = {s: d for s, n in zip(seeds, names, strict=True) if (d := _load(n))}
    if not found:
        return {}, math.nan, math.nan
    calls = mean(d["meta"]["llm_calls_per_product_all_routed"] for d in found.values())
    secs = mean(d["meta"]["llm_seconds_per_asked"] for d in found.values())
    return found, calls, secs


def shipped_rows(
    model: str = "domain_expert@4ep-syn-ctx-titles", seeds: tuple[int, ...] = (42, 43, 44)
) -> list[dict[str, Any]]:
    """Session 42: the default as shipped, end to end (`train`'s recipe: context, synthetic
    products from the bundled LLM, tau 1, lexical expert, neighbour index keeping titles; then
    the channel with 2 examples a candidate below 0.8, fused at 0.3), against the bars' baseline
    (the encoder alone with context, no synthetic products: ``@4ep-ctx``) on the same seeds."""
    ctx = _load("fusion-mwpd@4ep-ctx.json")
    if ctx is None:
        return []
    alone_by_seed = {r["seed"]: r["rows"]["domain expert alone (encoder)"] for r in ctx["runs"]}
    found, calls, secs = _shipped_channel("mwpd", model, [s for s in seeds if s in alone_by_seed])
    used = list(found)
    if not used:
        return []
    alone = [alone_by_seed[s] for s in used]
    tier = [found[s]["rows"]["domain expert, shipped (fused), no LLM"] for s in used]
    fused = [found[s]["rows"]["fused with the LLM, w=0.3"] for s in used]
    fits = [f"mwpd/{model}{_seed_suffix(s)}.json" for s in used]
    src = SHIPPED_CHANNEL.format("mwpd", model, "*")
    bars = ("lvl3 wF1", "lvl3 mF1", "lvl3 acc")
    # the same tier with no LLM anywhere (no synthetic products, tau 0; session 35's models)
    no_llm = {r["seed"]: r["rows"]["shipped: + neighbours"]
              for r in (_load("fusion-mwpd@4ep-ctx-nn.json") or {}).get("runs", [])}  # fmt: skip
    without = [no_llm[s] for s in used if s in no_llm]
    tier_speed = _mean_speed(fits)
    whole = _with_llm(tier_speed, calls, secs) if tier_speed else None
    return [
        row("**session 42, the default as shipped, domain tier alone** (context + synthetic "
            "+ lexical + neighbours, tau 1)", tier, src, llm_calls=0.0,
            products_s=tier_speed, train_min=_fit_minutes(fits),
            note=f"seeds {', '.join(map(str, used))}; minus the encoder alone (the bars' "
            "baseline), points (paired by seed): " + paired(tier, alone, bars)),
        row("session 42, the default as shipped: its LLM channel's pick alone (2 examples a "
            "candidate, p < 0.8)", [found[s]["rows"]["LLM pick alone"] for s in used], src,
            llm_calls=calls, note=f"{secs:.1f} s a routed product; minus the tier alone: "
            + _gain([found[s]["rows"]["LLM pick alone"] for s in used], tier)),
        row("**session 42, the default as shipped, end to end: + the channel fused at 0.3**",
            fused, src, llm_calls=calls, products_s=whole, train_min=_fit_minutes(fits),
            note="minus the encoder alone (the bars), points (paired by seed): "
            + paired(fused, alone, bars) + "; minus the tier alone: " + _gain(fused, tier)
            + "; minus the same tier with no LLM at all (no synthetic products, tau 0): "
            + paired(fused, without, bars)),
    ]  # fmt: skip


def hosted_rule_rows(
    model: str = "domain_expert@4ep-syn-ctx-titles", seeds: tuple[int, ...] = (42, 43, 44)
) -> list[dict[str, Any]]:
    """Session 45: the rule a hosted LLM gets (``zero_shot`` on p < 0.9, its pick as is), with
    the bundled 1.5B model standing in, on the default as shipped's tier: candidates by name,
    with two examples each as ``DualExpert(representation="examples")`` shows them, and the
    same examples on the candidate's own line (a probe). Each row against the tier alone on
    the same seeds."""
    fits = [f"mwpd/{model}{_seed_suffix(s)}.json" for s in seeds]
    speed = _mean_speed(fits)
    name = "disagreement/disagreement-mwpd-{}-s{}-k5-confidence-zero_shot{}.json"
    rows = []
    for shown, label in (
        ("", "names"),
        ("-ex2", "2 examples a candidate, one a line (the channel's)"),
        ("-ex2-inline", "2 examples a candidate, on its line (a probe)"),
    ):
        found, calls, secs = _llm_runs([name.format(model, s, shown) for s in seeds], seeds)
        if not found:
            continue
        tier = [d["rows"]["domain expert, shipped (fused), no LLM"] for d in found.values()]
        asked = ", ".join(f"{d['meta']['asked']} of {d['meta']['routed']}" for d in found.values())
        for variant, how in (("LLM pick alone", "its pick as is (a hosted LLM's rule)"),
                             ("fused with the LLM, w=0.25", "rank-fused at 0.25")):  # fmt: skip
            runs = [d["rows"][variant] for d in found.values()]
            rows.append(
                row(
                    f"session 45, the default as shipped's tier + local LLM zero_shot on p < 0.9, "
                    f"{label}, {how}",
                    runs,
                    name.format(model, "*", shown),
                    llm_calls=calls,
                    products_s=_with_llm(speed, calls, secs) if speed else None,
                    note=f"seeds {', '.join(map(str, found))}; the LLM asked about {asked} routed "
                    f"products; {secs:.1f} s a call; minus the tier alone: " + _gain(runs, tier),
                )
            )
    return rows


def label_summary_rows() -> list[dict[str, Any]]:
    """Sessions 37 and 38: the head started at each leaf's path + LLM-written summary
    (``label_summaries``), against the path alone; then each summary also added as one labelled
    training text (``--summary-samples``), against the head start alone. On the default tier
    without synthetic products (tau 0), paired by seed; and label init off (one seed)."""
    base, summ = ["fusion-mwpd@4ep-ctx-nn.json"], ["fusion-mwpd@4ep-ctx-nn-suminit.json"]
    both = ["fusion-mwpd@4ep-ctx-nn-sumboth.json"]
    if not (_load(base[0]) and _load(summ[0])):
        return []
    rows = []
    for files, tag, label, against, what in (
        (base, "@4ep-ctx-nn", "head from paths (the default)", None, ""),
        (summ, "@4ep-ctx-nn-suminit", "head from paths + LLM summaries",
         base, "the head from paths"),
        (both, "@4ep-ctx-nn-sumboth", "head from summaries + each summary as a training text",
         summ, "the head from summaries alone"),
    ):  # fmt: skip
        if not _load(files[0]):
            continue
        fits = [f"mwpd/domain_expert{tag}{_seed_suffix(s)}.json" for s in (42, 43, 44)]
        alone = seed_rows(files, "domain expert alone (encoder)")
        tier = seed_rows(files, "shipped: + neighbours")
        gain = {}
        if against is not None:
            gain = {
                "note": f"minus {what}, points (paired by seed): encoder "
                + paired(
                    alone,
                    seed_rows(against, "domain expert alone (encoder)"),
                    ("lvl3 wF1", "lvl3 mF1"),
                )
                + "; tier "
                + paired(
                    tier,
                    seed_rows(against, "shipped: + neighbours"),
                    ("lvl3 wF1", "lvl3 mF1", "lvl3 acc"),
                )
            }
        rows += [
            row(f"no synthetic, tau 0: encoder alone, {label}", alone, files[0], llm_calls=0.0,
                products_s=_speed(files, "encoder_products_s"), train_min=_fit_minutes(fits)),
            row(f"no synthetic, tau 0: + lexical + neighbours, {label}", tier, files[0],
                llm_calls=0.0, products_s=_speed(files, "with_neighbours_products_s"),
                train_min=_fit_minutes(fits), **gain),
        ]  # fmt: skip
    off = "mwpd/no_label_init@4ep-ctx-nn.json"
    if _load(off):
        rows.append(row("no synthetic, tau 0: + lexical + neighbours, no label init (seed 42)",
                        from_report(off), off, llm_calls=0.0, products_s=_speed_of(off),
                        train_min=_fit_minutes([off])))  # fmt: skip
    return rows


def bigbasket() -> list[dict[str, Any]]:
    seeds = [("fusion-bigbasket@2ep.json", 42), ("fusion-bigbasket@2ep-s43-44.json", None)]
    files = [f for f, _ in seeds]
    tfidf = [f"bigbasket/tfidf_linear@2ep{s}.json" for s in ("", "-s43", "-s44")]
    rows = [
        row("TF-IDF + LinearSVC (baseline)", [r for n in tfidf for r in from_report(n)],
            ", ".join(tfidf), llm_calls=0.0, products_s=_speed_of(tfidf[1]),
            train_min=_fit_minutes(tfidf[1:])),
        row("domain expert alone (encoder, 2 epochs)", seed_rows(files,
            "domain expert alone (encoder)"), ", ".join(files), llm_calls=0.0),
        row("lever 2: + lexical expert fused (default until session 16)", seed_rows(
            ["fusion-bigbasket@2ep-s43-44.json"], "fused, shipped (calibrated scale)"),
            "fusion-bigbasket@2ep-s43-44.json", llm_calls=0.0),
    ]  # fmt: skip
    tau = ["fusion-bigbasket@2ep-s43-44-tau.json"]
    if _load(tau[0]):
        rows.append(
            row("lever 2 + prior adjustment tau 1, no synthetic", seed_rows(tau,
                "fused, prior-adjusted tau 1"), tau[0], llm_calls=0.0)
        )  # fmt: skip
    syn = [f for f in ("fusion-bigbasket@2ep-syn.json", "fusion-bigbasket@2ep-syn-s42-44.json")
           if _load(f)]  # fmt: skip
    seeds = [r["seed"] for f in syn for r in _load(f)["runs"]]
    note = f"seeds {seeds}; TF-IDF on the same seeds: " + ", ".join(
        f"{r['lvl3 acc']:.4f} acc / {r['lvl3 mF1']:.4f} mF1"
        for s in seeds
        for r in from_report(f"bigbasket/tfidf_linear@2ep{_seed_suffix(s)}.json")
    )
    fits2 = [f"bigbasket/domain_expert@2ep-syn{_seed_suffix(s)}.json" for s in seeds]
    cost = {"products_s": _speed(syn, "fused_products_s"), "train_min": _fit_minutes(fits2)}
    if syn:
        rows += [
            row("lever 2 + 3a: + synthetic products, tau 0", seed_rows(syn,
                "fused, shipped (calibrated scale)"), ", ".join(syn), llm_calls=0.0, note=note,
                **cost),
            row("levers 2 + 3a + tau 1: session 18's default domain tier (2 epochs)", seed_rows(
                syn, "fused, prior-adjusted tau 1"), ", ".join(syn), llm_calls=0.0, note=note,
                **cost),
            row("levers 2 + 3a + tau 0.5 (not the default: on MWPD it costs 1.3 points of mF1)",
                seed_rows(syn, "fused, prior-adjusted tau 0.5"), ", ".join(syn), llm_calls=0.0,
                note=note, **cost),
        ]  # fmt: skip
    ep4 = ["fusion-bigbasket@4ep-syn.json"]  # train's default epochs (4); the rows above: 2
    if _load(ep4[0]):
        fits = [f"bigbasket/domain_expert@4ep-syn{_seed_suffix(s)}.json" for s in (42, 43, 44)]
        # the default minus TF-IDF, seed by seed (both on that seed's split)
        runs = _load(ep4[0])["runs"]
        base = [
            r for run in runs
            for r in from_report(f"bigbasket/tfidf_linear@2ep{_seed_suffix(run['seed'])}.json")
        ]  # fmt: skip
        diff = paired(seed_rows(ep4, "fused, prior-adjusted tau 1"), base, ("lvl3 acc", "lvl3 mF1"))
        rows += [
            row("4 epochs: domain expert alone (encoder + synthetic)", seed_rows(ep4,
                "domain expert alone (encoder)"), ep4[0], llm_calls=0.0,
                products_s=_speed(ep4, "encoder_products_s"), train_min=_fit_minutes(fits)),
            row("4 epochs: levers 2 + 3a + tau 1, session 20's default tier (before the index)",
                seed_rows(ep4, "fused, prior-adjusted tau 1"), ep4[0], llm_calls=0.0,
                products_s=_speed(ep4, "fused_products_s"), train_min=_fit_minutes(fits),
                note=f"minus TF-IDF on the same seed, points (paired, 3 seeds): {diff}; train "
                "min: three trainings side by side on 2 cores, one thread each"),
            row("4 epochs: levers 2 + 3a + tau 0.5", seed_rows(ep4,
                "fused, prior-adjusted tau 0.5"), ep4[0], llm_calls=0.0,
                products_s=_speed(ep4, "fused_products_s"), train_min=_fit_minutes(fits)),
        ]  # fmt: skip
    rows += current_bigbasket()
    rows += llm_rows("bigbasket", (
        ("domain_expert@2ep-syn", (42, 43, 44), "LLM pick alone",
         "default domain tier + LLM zero_shot on p < 0.9, its pick as is (the paper)"),
        ("domain_expert@2ep-syn", (42, 43, 44), "fused with the LLM, w=0.25",
         "session 18's default + local LLM zero_shot on p < 0.9, rank-fused at 0.25"),
    ))  # fmt: skip
    bb_speed = _speed(["fusion-bigbasket@4ep-syn.json"], "fused_products_s")
    rows += strategy_rows("bigbasket", "domain_expert@4ep-syn", 44, "4 epochs", bb_speed,
                          "bigbasket/domain_expert@4ep-syn-s44.json")  # fmt: skip
    rows += channel_rows("bigbasket", "domain_expert@4ep-nn", (42, 43, 44))
    rows += examples_rows("bigbasket", "domain_expert@4ep-nn", (42, 43, 44))
    rows += bigbasket_shipped_rows()
    return rows


def current_bigbasket() -> list[dict[str, Any]]:
    """Session 31: the default tier with the neighbour index, trained by `train`'s code at 4
    epochs without synthetic products (so tau 0), against TF-IDF on each seed's split."""
    nn = ["fusion-bigbasket@4ep-nn.json"]
    data = _load(nn[0])
    if not data:
        return []
    seeds = [r["seed"] for r in data["runs"]]
    fits = [f"bigbasket/domain_expert@4ep-nn{_seed_suffix(s)}.json" for s in seeds]
    tfidf = [
        r for s in seeds for r in from_report(f"bigbasket/tfidf_linear@2ep{_seed_suffix(s)}.json")
    ]
    shipped = seed_rows(nn, "shipped: + neighbours")
    note = f"seeds {', '.join(map(str, seeds))}"
    return [
        row("no synthetic: domain expert alone (encoder, 4 epochs)", seed_rows(nn,
            "domain expert alone (encoder)"), nn[0], llm_calls=0.0,
            products_s=_speed(nn, "encoder_products_s"), train_min=_fit_minutes(fits), note=note),
        row("no synthetic: + lexical expert fused", seed_rows(nn,
            "fused, shipped (calibrated scale)"), nn[0], llm_calls=0.0,
            products_s=_speed(nn, "fused_products_s"), train_min=_fit_minutes(fits), note=note),
        row("neighbour index alone", seed_rows(nn, "neighbour expert alone"), nn[0],
            llm_calls=0.0, products_s=_speed(nn, "neighbour_products_s"), note=note),
        row("**no synthetic: + lexical + neighbours, the default tier without an LLM**", shipped,
            nn[0], llm_calls=0.0, products_s=_speed(nn, "with_neighbours_products_s"),
            train_min=_fit_minutes(fits),
            note=f"{note}; minus TF-IDF on the same split, points (paired): "
            + paired(shipped, tfidf, ("lvl3 acc", "lvl3 mF1", "lvl3 wF1"))),
    ]  # fmt: skip


def bigbasket_shipped_rows(
    model: str = "domain_expert@4ep-syn-titles", seeds: tuple[int, ...] = (42, 43, 44)
) -> list[dict[str, Any]]:
    """Session 43: BigBasket's default as shipped, end to end (`train`'s recipe: synthetic
    products from the bundled LLM for each split's rare leaves, tau 1, lexical expert, neighbour
    index keeping titles; then the channel with 2 examples a candidate below 0.8, fused at 0.3),
    against TF-IDF + LinearSVC on the same seed's split (the issue's BigBasket bar)."""
    fits = {s: f"bigbasket/{model}{_seed_suffix(s)}.json" for s in seeds}
    tier = {s: r for s, f in fits.items() for r in from_report(f)}
    tfidf = {s: r for s in seeds
             for r in from_report(f"bigbasket/tfidf_linear@2ep{_seed_suffix(s)}.json")}  # fmt: skip
    used = [s for s in tier if s in tfidf]
    if not used:
        return []
    bar = ("lvl3 acc", "lvl3 mF1", "lvl3 wF1")
    tier_speed = _mean_speed([fits[s] for s in used])
    rows = [
        row("**session 43, BigBasket's default as shipped, domain tier alone** (synthetic + "
            "lexical + neighbours, tau 1)", [tier[s] for s in used], f"bigbasket/{model}*.json",
            llm_calls=0.0, products_s=tier_speed,
            train_min=_fit_minutes([fits[s] for s in used]),
            note=f"seeds {', '.join(map(str, used))}; minus TF-IDF on the same split, points "
            "(paired by seed): " + paired([tier[s] for s in used], [tfidf[s] for s in used], bar)),
    ]  # fmt: skip
    found, calls, secs = _shipped_channel("bigbasket", model, used)
    if not found:
        return rows
    asked = list(found)
    alone = [found[s]["rows"]["domain expert, shipped (fused), no LLM"] for s in asked]
    fused = [found[s]["rows"]["fused with the LLM, w=0.3"] for s in asked]
    whole = _with_llm(tier_speed, calls, secs) if tier_speed else None
    rows.append(row(
        "**sessions 43-44, BigBasket's default as shipped, end to end: + the channel with 2 "
        "examples a candidate on p < 0.8, fused at 0.3**", fused,
        SHIPPED_CHANNEL.format("bigbasket", model, "*"),
        llm_calls=calls, products_s=whole, train_min=_fit_minutes([fits[s] for s in asked]),
        note=f"seeds {', '.join(map(str, asked))}; {secs:.1f} s a routed product; minus TF-IDF "
        "on the same split, points (paired by seed): "
        + paired(fused, [tfidf[s] for s in asked], bar) + "; minus the tier alone: "
        + _gain(fused, alone)))  # fmt: skip
    return rows


def _speed_cell(v: float | None) -> str:
    """Products/s: whole numbers, two decimals below 10 (an LLM tier's rate)."""
    return "–" if not v else f"{v:.0f}" if v >= 10 else f"{v:.2f}"


def _cell(r: dict[str, Any], c: str) -> str:
    v, half = r[c], r[f"{c} ±"]
    if isinstance(v, float) and math.isnan(v):
        return "–"
    return f"{v:.4f}" + (f" ± {half:.4f}" if half is not None else "")


def _table(rows: list[dict[str, Any]]) -> str:
    head = ["system", "seeds", *COLUMNS, "LLM calls/product", "products/s", "train min", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        extra = [
            f"{r['llm_calls']:.3f}" if r.get("llm_calls") is not None else "–",
            _speed_cell(r.get("products_s")),
            f"{r['train_min']:.0f}" if r.get("train_min") else "–",
            r.get("note", ""),
        ]
        cells = [r["system"], str(r["seeds"]), *(_cell(r, c) for c in COLUMNS), *extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "report.json")
    args = ap.parse_args()
    report = {"date": str(date.today()), "mwpd": mwpd(), "bigbasket": bigbasket()}
    for name in ("mwpd", "bigbasket"):
        print(f"\n{name} (lvl3 unless named; mean ± 95% t-interval over seeds)\n")
        print(_table(report[name]))
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
