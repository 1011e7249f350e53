"""Rationale writing speed on the local LLM: pairs per second, before and after batching.

Each configuration writes rationales for the same Home Depot training pairs with a fresh local
LLM (model load not timed, DSPy cache off) and reports pairs/s and tokens per pair. A
configuration is ``ADAPTER:PARALLEL``: the adapter (``json``: constrained JSON, the old default;
``chat``: DSPy's ChatAdapter; ``brief``: :class:`dualexpert.adapters.BriefChatAdapter`) and the
pairs in flight (``1``: one llama.cpp request at a time; ``N``: N sequences decoded in one
llama.cpp batch). Prints a table and writes JSON.

    python benchmarks/rationale_speed.py --pairs 32 --configs json:1 chat:1 brief:1 brief:16 \\
        --out benchmarks/results/rationale_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "home-depot" / "pairs.csv"


def measure(pairs: list, adapter: str, parallel: int, llm: str, max_tokens: int) -> dict:
    import dspy

    from dualexpert.adapters import BriefChatAdapter
    from dualexpert.lm import local_lm
    from dualexpert.relevance import RationaleWriter, write_rationales

    adapters = {"json": dspy.JSONAdapter, "chat": dspy.ChatAdapter, "brief": BriefChatAdapter}
    lm = local_lm(llm, cache=False, parallel=parallel)
    engine = lm.engine if hasattr(lm, "engine") else lm.kwargs["engine"]
    engine.start()  # the model load is not part of the rate
    try:
        with tempfile.TemporaryDirectory() as tmp, dspy.context(lm=lm, adapter=adapters[adapter]()):
            t0 = time.perf_counter()
            totals = write_rationales(
                pairs, Path(tmp) / "r.jsonl", RationaleWriter(max_tokens), parallel=parallel
            )
            secs = time.perf_counter() - t0
            rows = [json.loads(x) for x in (Path(tmp) / "r.jsonl").read_text().splitlines()]
    finally:
        engine.close()
    n = len(pairs)
    return {
        "pairs": n,
        "written": totals["written"],
        "failed": totals["failed"],
        "seconds": secs,
        "pairs_per_s": n / secs,
        "prompt_tokens_per_pair": totals["prompt_tokens"] / n,
        "completion_tokens_per_pair": totals["completion_tokens"] / n,
        "words_per_rationale": sum(len(r["rationale"].split()) for r in rows) / max(1, len(rows)),
        "example": rows[0]["rationale"] if rows else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--offset", type=int, default=1000, help="skip the pairs used for training")
    ap.add_argument("--configs", nargs="+", default=["json:1", "chat:1", "brief:1", "brief:16"])
    ap.add_argument("--llm", default="qwen-1.5b")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/rationale_speed.json")
    args = ap.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"data not found: {args.data} (see ../shared/data/README.md)")
    from dualexpert.lm import llm_threads
    from dualexpert.relevance import load_pairs, sample_pairs, split_by_query

    train, _ = split_by_query(load_pairs(args.data), 0.2, seed=0)
    pairs = sample_pairs(train, args.offset + args.pairs, seed=0)[args.offset :]
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["setup"] = {
        "pairs": len(pairs),
        "llm": args.llm,
        "llm_threads": llm_threads(),
        "max_tokens": args.max_tokens,
        "cpu": next(
            (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln),
            "?",
        ),
        "date": time.strftime("%Y-%m-%d"),
    }
    for cfg in args.configs:
        adapter, _, parallel = cfg.partition(":")
        results[cfg] = measure(pairs, adapter, int(parallel or 1), args.llm, args.max_tokens)
        print(cfg, json.dumps({k: v for k, v in results[cfg].items() if k != "example"}))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    base = results.get(args.configs[0], {}).get("pairs_per_s")
    print(f"\n{'config':12s} {'pairs/s':>8s} {'s/pair':>7s} {'speed-up':>8s} {'prompt tok':>10s}"
          f" {'gen tok':>8s} {'words':>6s}")  # fmt: skip
    for cfg in args.configs:
        r = results[cfg]
        up = r["pairs_per_s"] / base if base else float("nan")
        print(
            f"{cfg:12s} {r['pairs_per_s']:8.3f} {1 / r['pairs_per_s']:7.2f} {up:7.2f}x "
            f"{r['prompt_tokens_per_pair']:10.0f} {r['completion_tokens_per_pair']:8.1f} "
            f"{r['words_per_rationale']:6.1f}"
        )


if __name__ == "__main__":
    main()
