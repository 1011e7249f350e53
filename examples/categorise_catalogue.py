"""Categorise a catalogue from Python: the domain expert proposes candidates, an LLM decides the
uncertain products.

    python examples/categorise_catalogue.py                          # local Qwen2.5-Coder-1.5B
    python examples/categorise_catalogue.py --llm smollm2 --n 3      # fast, weak local model
    python examples/categorise_catalogue.py --domain runs/demo/domain-expert
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import dspy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import domain_expert  # noqa: E402

from dualexpert.demo import split_demo  # noqa: E402
from dualexpert.general import GeneralExpert  # noqa: E402
from dualexpert.lm import get_lm  # noqa: E402
from dualexpert.pipeline import DualExpert  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="qwen-1.5b", help="local model or LiteLLM model string")
    ap.add_argument("--domain", help="saved domain expert folder (default: train one)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=5, help="products to categorise")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.9, help="LLM for p(top-1) below this")
    args = ap.parse_args(argv)

    _, test = split_demo()
    domain = domain_expert(args.domain, args.epochs)
    dspy.configure(lm=get_lm(args.llm), track_usage=True)
    categoriser = DualExpert(domain, GeneralExpert("zero_shot"), k=args.k, threshold=args.threshold)
    records = []
    for product in test[: args.n]:
        pred = categoriser(product)
        rec = {
            "title": product.title,
            "category": pred.category,
            "candidates": [c["id"] for c in pred.candidates],
            "routed": pred.routed,
            "why": pred.reason or pred.route_reason,
        }
        print(json.dumps(rec, ensure_ascii=False))
        records.append(rec)
    return records


if __name__ == "__main__":
    main()
