"""An optimisation run: compile the general expert's prompt with a DSPy optimiser on labelled
products (the domain expert stays fixed), score it before and after on held-back products, and
save it for ``dualexpert classify --program``.

    python examples/optimize_categoriser.py --optimizer bootstrap --n-train 20 --n-dev 20
    python examples/optimize_categoriser.py --llm smollm2 --optimizer gepa --max-calls 60
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import dspy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import domain_expert  # noqa: E402
from dualexpert.optimizers import OPTIMIZERS, build_examples, optimize  # noqa: E402

from dualexpert.demo import split_demo  # noqa: E402
from dualexpert.lm import get_lm  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="qwen-1.5b")
    ap.add_argument("--domain", help="saved domain expert folder (default: train one)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--optimizer", default="bootstrap", choices=OPTIMIZERS)
    ap.add_argument("--n-train", type=int, default=12)
    ap.add_argument("--n-dev", type=int, default=12)
    ap.add_argument("--max-calls", type=int, default=120)
    ap.add_argument("--out", default="runs/optimized-general-expert.json")
    args = ap.parse_args(argv)

    # products the domain expert did not train on, split into the optimiser's and held-back dev
    _, held_out = split_demo()
    domain = domain_expert(args.domain, args.epochs)
    trainset = build_examples(domain, held_out[: args.n_train], k=3)
    devset = build_examples(domain, held_out[args.n_train : args.n_train + args.n_dev], k=3)
    lm = get_lm(args.llm)
    dspy.configure(lm=lm)
    result = optimize(
        trainset, devset, args.optimizer, lm=lm, max_calls=args.max_calls, out=args.out
    )
    report = result.to_dict()
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
