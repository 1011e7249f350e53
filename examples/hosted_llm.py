"""Plug in a hosted LLM through a LiteLLM model string (OpenAI, Anthropic, ... or any
OpenAI-compatible server such as vLLM, llama.cpp's server or Ollama).

    OPENAI_API_KEY=... python examples/hosted_llm.py --model openai/gpt-4o-mini
    python examples/hosted_llm.py --model openai/qwen --api-base http://localhost:8000/v1

Both the blocking call and the async one (``acall``) go through the same LiteLLM model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import dspy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import domain_expert  # noqa: E402

from dualexpert.demo import split_demo  # noqa: E402
from dualexpert.general import GeneralExpert  # noqa: E402
from dualexpert.lm import hosted_lm  # noqa: E402
from dualexpert.pipeline import DualExpert  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="openai/gpt-4o-mini", help="a LiteLLM model string")
    ap.add_argument("--api-base", default=None, help="an OpenAI-compatible server URL")
    ap.add_argument("--domain", help="saved domain expert folder (default: train one)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args(argv)

    _, test = split_demo()
    domain = domain_expert(args.domain, args.epochs)
    lm = hosted_lm(args.model, api_base=args.api_base, max_tokens=args.max_tokens, cache=False)
    categoriser = DualExpert(domain, GeneralExpert("zero_shot"), k=3, threshold=1.01)
    products = test[: args.n]
    with dspy.context(lm=lm):
        preds = [categoriser(p) for p in products[:1]]

        async def rest():  # the remaining products concurrently, through LiteLLM's async client
            return await asyncio.gather(*(categoriser.acall(p) for p in products[1:]))

        preds += asyncio.run(rest())
    out = []
    for p, pred in zip(products, preds, strict=True):
        rec = {
            "title": p.title,
            "category": pred.category,
            "candidates": [c["id"] for c in pred.candidates],
            "why": pred.reason,
            "model": args.model,
        }
        print(json.dumps(rec, ensure_ascii=False))
        out.append(rec)
    return out


if __name__ == "__main__":
    main()
