"""The LLM asked only where the two cheap experts disagree (issue 17: routing by expected gain).

The shipped domain expert is two experts fused: the fine-tuned encoder and the lexical expert
(TF-IDF + linear SVM). Where their top-1 answers differ, one of them is wrong, so that is where a
third opinion can gain; where they agree, the fused answer is right far more often. This script
asks the local LLM (strategy ``score``: its log-probabilities over the candidate numbers, shown
as descriptive names) to choose among the fused top-``k`` candidates of the products on which the
encoder and the lexical expert disagree, and fuses it as ``log p_fused + w * log p_LLM``:

* the fused domain expert alone (no LLM);
* the LLM's pick alone on the disagreements;
* each ``w`` of a grid, and ``w`` cross-fitted on halves of the asked products (each half with
  the ``w`` that is most accurate on the other half), so that row is honest.

``--route confidence`` asks instead about the products whose fused top-1 probability is below
``--threshold`` (the shipped rule), and ``--strategy zero_shot`` (the shipped default; any LM)
reads the LLM's generated answer: its score of a candidate is minus its rank, as in
``DualExpert``; ``w`` None, the LLM's pick alone, is what the shipped default does.

``--strategy channel`` (local models only) asks nothing: each candidate is scored by the
log-likelihood of the product's first words after its name, and fused the same way.

The LLM's answers are kept in ``<out>/llm-<tag>.jsonl`` as they come (an interrupted run
resumes). Prints a table and writes ``<out>/disagreement-<tag>.json``.

    python benchmarks/disagreement.py --seed 42 --limit 150
    python benchmarks/disagreement.py --seed 42 --route confidence --strategy zero_shot --k 5
    python benchmarks/disagreement.py --seed 42 --route confidence --strategy channel --k 5
    python benchmarks/disagreement.py --seed 42 --route confidence --strategy channel --k 5 \
        --threshold 0.8

A lower ``--threshold`` reuses the answers kept for 0.9 (its products are a subset of those).

``--exemplars M`` shows each candidate as ``DualExpert(representation="examples")`` does: its
descriptive name and its ``M`` training products nearest to the product (the default with the
channel strategy since session 39):

    python benchmarks/disagreement.py --seed 42 --route confidence --strategy channel --k 5 \
        --threshold 0.8 --exemplars 2
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
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from domain_expert import load_dataset  # noqa: E402
from fusion import class_counts, scores  # noqa: E402

WEIGHTS = (0.25, 0.5, 1.0, 2.0)
# ``channel`` scores are log-likelihoods of a whole title (tens of nats apart), not a pick
CHANNEL_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
LOGPROB_STRATEGIES = ("score", "channel")
COLUMNS = ("lvl3 acc", "lvl3 wF1", "lvl3 mF1", "head mF1", "tail mF1", "avg wF1")


def ask_llm(
    expert,
    test,
    asked,
    top,
    out: Path,
    llm: str | None,
    strategy: str = "score",
    summaries: dict[str, str] | None = None,
    shown_as: dict[int, list[str]] | None = None,
) -> dict[str, list[float]]:
    """The LLM's score of each asked product's candidates (cached in ``out``): log-probabilities
    with ``score`` and ``channel``, minus the rank in its answer with the other strategies.
    Candidates are shown by descriptive name, followed by their summary when ``summaries``
    has one (``DualExpert``'s ``summary`` representation), or as ``shown_as[i]`` says."""
    import dspy

    from dualexpert.general import GeneralExpert
    from dualexpert.lm import get_lm
    from dualexpert.pipeline import candidate_text

    rep = "summary" if summaries else "descriptive"
    done: dict[str, list[float]] = {}
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["id"]] = rec["logp"]
    todo = [i for i in asked if test[i].id not in done]
    if not todo:
        return done
    general = GeneralExpert(strategy)
    lm = get_lm(llm)
    t0 = time.perf_counter()
    with dspy.context(lm=lm), open(out, "a") as f:
        for n, i in enumerate(todo, 1):
            shown = [
                candidate_text(expert.taxonomy, expert.classes_[j], rep, summaries) for j in top[i]
            ]
            if shown_as is not None:
                shown = shown_as[i]
            t1 = time.perf_counter()
            g = general(product=test[i].text(), candidates=shown)
            took = round(time.perf_counter() - t1, 3)
            if strategy in LOGPROB_STRATEGIES:
                logp = [float(x) for x in (g.llm_logprobs or [0.0] * len(shown))]
            else:  # a fallback keeps the domain expert's order
                rank = {c: r for r, c in enumerate(g.ranking)}
                logp = [-float(rank.get(c, len(shown))) for c in range(len(shown))]
            done[test[i].id] = logp
            rec = {
                "id": test[i].id,
                "logp": logp,
                "fallback": bool(g.fallback),
                "decision": getattr(g, "decision", None),
                "seconds": took,
            }
            f.write(json.dumps(rec) + "\n")
            f.flush()
            if n % 10 == 0 or n == len(todo):
                secs = time.perf_counter() - t0
                print(f"  LLM {n}/{len(todo)} ({secs:.0f} s, {secs / n:.1f} s each)", flush=True)
    return done


def examples_shown(
    expert, train, test, asked, top, m: int, inline: bool = False
) -> dict[int, list[str]]:
    """Each asked product's candidates as ``DualExpert(representation="examples")`` shows them:
    the descriptive name and the ``m`` training products of that class nearest to the product.
    A model saved before its neighbour index kept titles gets the index rebuilt from ``train``
    (the products it was built from; the same encoder and settings). ``inline`` puts the
    products on the candidate's line instead (:func:`inline_examples`)."""
    from dualexpert.domain import Candidate
    from dualexpert.pipeline import DualExpert

    if not expert.neighbours_.has_titles:
        print("rebuilding the neighbour index with titles (saved before it kept them)")
        expert.fit_neighbours(train)
    de = DualExpert(expert, representation="examples", examples=m)
    out = {}
    for i in asked:
        cands = [Candidate(expert.classes_[j], (), 0.0) for j in top[i]]
        if inline:  # a probe: the same products on the candidate's own line
            names = [de.taxonomy.descriptive_name(c.id) for c in cands]
            near = expert.neighbours_.examples(test[i].text(), [c.id for c in cands], m)
            out[i] = [inline_examples(n, e) for n, e in zip(names, near, strict=True)]
        else:
            out[i] = de.general_inputs(test[i], cands)["candidates"]
    return out


def inline_examples(name: str, examples: list[str]) -> str:
    """``name (e.g. <title>; <title>)``: each title cut as ``with_examples`` cuts it, all on
    one line, so every candidate stays one numbered line of the prompt."""
    from dualexpert.pipeline import EXAMPLE_WORDS

    cut = "; ".join(" ".join(e.split()[:EXAMPLE_WORDS]) for e in examples)
    return f"{name} (e.g. {cut})" if examples else name


def seconds_per_call(cache: Path) -> float | None:
    """The mean seconds of the LLM calls timed in ``cache`` (older caches have none)."""
    recs = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
    secs = [r["seconds"] for r in recs if r.get("seconds") is not None]
    return sum(secs) / len(secs) if secs else None


def pick(fused, top, answers, asked, ids, expert, w: float | None) -> np.ndarray:
    """Fused probabilities where each asked product's top-1 is what ``DualExpert`` would output
    with fusion weight ``w`` (``fused_choice``; ``w`` None: the LLM's pick alone)."""
    from dualexpert.evaluation.routing import fused_choice

    index = {c: j for j, c in enumerate(expert.classes_)}
    out = fused.copy()
    for i in asked:
        cands = [{"id": expert.classes_[j], "probability": float(fused[i, j])} for j in top[i]]
        lp, score = answers[ids[i]]
        order = sorted(range(len(lp)), key=lambda c: -lp[c])
        rec = {
            "candidates": cands,
            "ranking": [cands[c]["id"] for c in order],
            "llm_logprobs": lp if score else None,  # else its order: minus the rank, as stored
        }
        out[i, index[fused_choice(rec, w)]] = 2.0  # above any probability: the new top-1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mwpd", choices=["mwpd", "bigbasket"])
    ap.add_argument("--system", default="domain_expert")
    ap.add_argument("--tag", default="@4ep")
    ap.add_argument("--seed", type=int, default=42, help="the trained model's seed")
    ap.add_argument("--k", type=int, default=3, help="fused candidates shown to the LLM")
    ap.add_argument("--limit", type=int, default=None, help="ask about this many products")
    ap.add_argument("--route", default="disagree", choices=["disagree", "confidence"])
    ap.add_argument("--threshold", type=float, default=0.9, help="for --route confidence")
    ap.add_argument(
        "--strategy",
        default="score",
        choices=["score", "channel", "zero_shot", "rank", "cot_rank"],
    )
    ap.add_argument(
        "--llm",
        default=None,
        help="qwen-1.5b (default), a .gguf path or a LiteLLM model string (score, channel: "
        "local only)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "disagreement")
    ap.add_argument(
        "--summaries",
        type=Path,
        help="a summary index folder: candidates shown as descriptive name + summary",
    )
    ap.add_argument(
        "--exemplars",
        type=int,
        default=0,
        help="show candidates as DualExpert's examples representation does, with this many of "
        "their training products, those nearest to the product",
    )
    ap.add_argument(
        "--inline",
        action="store_true",
        help="with --exemplars: each candidate's products on its own line, in brackets",
    )
    ap.add_argument(
        "--prior-adjustment",
        type=float,
        default=None,
        help="tau on the fused probabilities (default: the model's own; models saved before "
        "they kept their class counts get them from the training file)",
    )
    args = ap.parse_args()
    if args.inline and not args.exemplars:
        ap.error("--inline needs --exemplars N (the products it puts on each candidate's line)")

    from dualexpert.domain import DomainExpert

    tag = f"{args.dataset}-{args.system}{args.tag}-s{args.seed}-k{args.k}"
    if (args.route, args.strategy) != ("disagree", "score"):
        tag += f"-{args.route}-{args.strategy}"
    summaries = None
    if args.summaries:
        from dualexpert.indexes import SummaryIndex

        summaries = SummaryIndex.load(args.summaries).summaries
        tag += f"-summary-{args.summaries.name}"
    if args.exemplars:
        tag += f"-ex{args.exemplars}" + ("-inline" if args.inline else "")
    folder = ROOT / "runs" / f"{args.dataset}-{args.system}{args.tag}-s{args.seed}" / "model"
    expert = DomainExpert.load(folder)
    if expert.lexical_ is None:
        raise SystemExit(f"{folder} has no lexical expert")
    train, test = load_dataset(args.dataset, args.seed if args.dataset == "bigbasket" else 0)
    counts = Counter(p.category for p in train)
    p = expert.encoder_proba(test)
    m = expert.lexical_margins([x.text() for x in test])
    fused = expert.fused_proba(p, [x.text() for x in test])  # lexical (and neighbour) experts
    if expert.class_counts_ is None:  # saved before the model kept its class counts
        expert.class_counts_ = class_counts(expert, counts)
    fused = expert.adjust_for_prior(fused, args.prior_adjustment)  # as predict_proba does
    top = np.argsort(-fused, axis=1)[:, : args.k]
    if args.route == "disagree":
        routed = np.flatnonzero(p.argmax(axis=1) != m.argmax(axis=1))
    else:
        routed = np.flatnonzero(fused.max(axis=1) < args.threshold)
    rng = np.random.default_rng(0)
    asked = sorted(rng.permutation(routed)[: args.limit or len(routed)].tolist())
    ids = [x.id for x in test]
    index = {c: j for j, c in enumerate(expert.classes_)}
    by_path = {tuple(expert.taxonomy.get(c).path): c for c in expert.classes_}
    # a test leaf the training data never had is no class: always wrong
    gold = [by_path.get(tuple(x.category)) for x in test]
    in_top = np.mean([index.get(gold[i], -1) in top[i] for i in asked])
    print(
        f"{len(routed)} of {len(test)} products routed by {args.route} "
        f"({len(routed) / len(test):.1%}); "
        f"asking about {len(asked)}; gold in the fused top-{args.k} for {in_top:.1%} of them"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / f"llm-{tag}.jsonl"  # the answers do not depend on the threshold
    if args.route == "confidence" and args.threshold != 0.9:
        tag += f"-t{args.threshold:g}"
    shown_as = None
    if args.exemplars:
        shown_as = examples_shown(expert, train, test, asked, top, args.exemplars, args.inline)
    logp = ask_llm(expert, test, asked, top, cache, args.llm, args.strategy, summaries, shown_as)
    is_score = args.strategy in LOGPROB_STRATEGIES
    weights = CHANNEL_WEIGHTS if args.strategy == "channel" else WEIGHTS

    def acc_on(proba, rows) -> float:
        return float(np.mean([expert.classes_[int(np.argmax(proba[i]))] == gold[i] for i in rows]))

    base = "domain expert, shipped (fused), no LLM"
    rows: dict[str, dict] = {base: scores(expert, fused, test, counts)}
    # contextual calibration: the LLM's mean log-probability of each position over the asked
    # products (no labels) is taken out, since small LLMs favour the first candidate
    bias = np.mean([logp[ids[i]] for i in asked], axis=0)
    answers = {k: (v, is_score) for k, v in logp.items()}
    calibrated = {k: (list(np.asarray(v) - bias), True) for k, v in logp.items()}
    half = rng.permutation(asked)
    halves = [sorted(half[: len(half) // 2].tolist()), sorted(half[len(half) // 2 :].tolist())]
    variants: dict[str, np.ndarray] = {}
    chosen: dict[str, list[float]] = {}
    for label, lp in (("", answers), (", position-calibrated", calibrated)):
        variants[f"LLM pick alone{label}"] = pick(fused, top, lp, asked, ids, expert, None)
        for w in weights:
            variants[f"fused with the LLM{label}, w={w:g}"] = pick(
                fused, top, lp, asked, ids, expert, w
            )
        # w cross-fitted on halves of the asked products
        crossed, chosen[label] = fused.copy(), []
        for a, b in ((0, 1), (1, 0)):
            dev = halves[a]
            w = max(weights, key=lambda v: acc_on(pick(fused, top, lp, dev, ids, expert, v), dev))
            chosen[label].append(w)
            crossed[halves[b]] = pick(fused, top, lp, halves[b], ids, expert, w)[halves[b]]
        variants[f"fused with the LLM{label}, w cross-fitted on halves"] = crossed
    base_acc = acc_on(fused, asked)
    rows[base]["acc on asked"] = base_acc
    right_before = [expert.classes_[int(np.argmax(fused[i]))] == gold[i] for i in asked]
    for name, proba in variants.items():
        r = scores(expert, proba, test, counts)
        right_after = [expert.classes_[int(np.argmax(proba[i]))] == gold[i] for i in asked]
        r["acc on asked"] = float(np.mean(right_after))
        r["fixed"] = int(sum(a and not b for a, b in zip(right_after, right_before, strict=True)))
        r["broken"] = int(sum(b and not a for a, b in zip(right_after, right_before, strict=True)))
        rows[name] = r
    calls = len(asked) / len(test)
    print(f"| system | {' | '.join(COLUMNS)} | acc on asked | fixed | broken | LLM calls/product |")
    print("|---|" + "---|" * (len(COLUMNS) + 4))
    for name, r in rows.items():
        cells = " | ".join(f"{r[c]:.4f}" for c in COLUMNS)
        fb = f"{r.get('fixed', '–')} | {r.get('broken', '–')}"
        llm = 0.0 if name.startswith("domain") else calls
        print(f"| {name} | {cells} | {r['acc on asked']:.4f} | {fb} | {llm:.3f} |")
    print(f"cross-fitted w: {chosen}")
    meta = {
        "date": str(date.today()),
        "machine": f"{os.cpu_count()} CPU cores",
        "command": " ".join(sys.argv),
        "route": args.route,
        "prior_adjustment": expert.prior_adjustment_
        if args.prior_adjustment is None
        else args.prior_adjustment,
        "strategy": args.strategy,
        "summaries": str(args.summaries) if args.summaries else None,
        "exemplars": args.exemplars,
        "inline": args.inline,
        "routed": len(routed),
        "asked": len(asked),
        "n_test": len(test),
        "gold_in_top_k": float(in_top),
        "cross_fit_w": chosen,
        "llm_position_bias": bias.tolist(),
        "llm_calls_per_product": calls,
        "llm_calls_per_product_all_routed": len(routed) / len(test),
        "llm_seconds_per_asked": seconds_per_call(cache),
    }
    res = args.out / f"disagreement-{tag}.json"
    res.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {res}")


if __name__ == "__main__":
    main()
