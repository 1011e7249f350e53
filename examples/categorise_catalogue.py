"""Categorise a catalogue from Python: train the domain expert, then let an LLM decide the
uncertain products.

    python examples/categorise_catalogue.py                 # local Qwen2.5-Coder-1.5B
    python examples/categorise_catalogue.py --llm smollm2   # fast, weak local model
"""

from __future__ import annotations

import argparse
import json

import dspy

from dualexpert import DomainExpert
from dualexpert.demo import split_demo
from dualexpert.general import GeneralExpert
from dualexpert.lm import get_lm
from dualexpert.pipeline import DualExpert


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="qwen-1.5b")
    ap.add_argument("--n", type=int, default=5)
    args = ap.parse_args()

    train, test = split_demo()
    domain = DomainExpert(epochs=3, batch_size=16, learning_rate=2e-4).fit(train, progress=False)
    dspy.configure(lm=get_lm(args.llm), track_usage=True)
    categoriser = DualExpert(domain, GeneralExpert("zero_shot"), k=3, threshold=0.9)
    for product in test[: args.n]:
        pred = categoriser(product)
        print(json.dumps({"title": product.title, "category": pred.category,
                          "routed": pred.routed, "why": pred.reason or pred.route_reason}))


if __name__ == "__main__":
    main()
