"""A dspy.ReAct agent that files new products with the dual-expert categoriser as its tool and
explains its choice.

    python examples/react_agent.py                          # Qwen2.5-Coder-1.5B drives both
    python examples/react_agent.py --llm smollm2 --agent-llm openai/gpt-4o-mini

The categoriser's own LLM (``--llm``) and the agent's (``--agent-llm``) can differ: the agent
needs a model that follows the ReAct format; the categoriser only picks among candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import dspy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import domain_expert  # noqa: E402

from dualexpert.demo import split_demo  # noqa: E402
from dualexpert.general import GeneralExpert  # noqa: E402
from dualexpert.lm import get_lm  # noqa: E402
from dualexpert.pipeline import DualExpert  # noqa: E402
from dualexpert.tools import categoriser_tool  # noqa: E402


class FileProduct(dspy.Signature):
    """You file new products in the shop's category taxonomy. Call categorise_product with the
    product's title and description, then finish. Answer with the category path the tool
    returned and explain the choice in one sentence."""

    product: str = dspy.InputField(desc="the new product's title and description")
    category: str = dspy.OutputField(desc="the category path returned by categorise_product")
    explanation: str = dspy.OutputField(desc="why the product belongs there")


def build_agent(categoriser: DualExpert, max_iters: int = 3) -> dspy.ReAct:
    return dspy.ReAct(FileProduct, tools=[categoriser_tool(categoriser)], max_iters=max_iters)


def main(argv: list[str] | None = None, agent_lm: Any = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="qwen-1.5b", help="the categoriser's LLM")
    ap.add_argument("--agent-llm", default=None, help="the agent's LLM (default: --llm)")
    ap.add_argument("--domain", help="saved domain expert folder (default: train one)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=2, help="products to file")
    ap.add_argument("--max-iters", type=int, default=3)
    args = ap.parse_args(argv)

    _, test = split_demo()
    domain = domain_expert(args.domain, args.epochs)
    dspy.configure(lm=get_lm(args.llm), adapter=dspy.JSONAdapter())
    categoriser = DualExpert(domain, GeneralExpert("zero_shot"), k=3, threshold=0.9)
    agent = build_agent(categoriser, args.max_iters)
    if agent_lm is not None or args.agent_llm:
        agent.set_lm(agent_lm or get_lm(args.agent_llm))  # only the agent's own predictors
    out = []
    for product in test[: args.n]:
        pred = agent(product=product.text())
        steps = [k for k in pred.trajectory if k.startswith("tool_name_")]
        rec = {
            "product": product.title,
            "category": pred.category,
            "explanation": pred.explanation,
            "tool_calls": [pred.trajectory[k] for k in steps],
            "observations": [pred.trajectory[k.replace("tool_name", "observation")] for k in steps],
        }
        print(json.dumps(rec, ensure_ascii=False, default=str))
        out.append(rec)
    return out


if __name__ == "__main__":
    main()
