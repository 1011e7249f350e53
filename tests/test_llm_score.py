"""The ``score`` strategy on a real local LLM (SmolLM2): real log-probabilities, the KV cache of
the shared prompt prefix reused without changing them, and the call counted as LLM usage."""

from __future__ import annotations

import math

import dspy
import pytest
from dspy.utils.usage_tracker import track_usage

from dualexpert.general import GeneralExpert
from dualexpert.lm import local_lm

pytestmark = pytest.mark.slow

CANDS = [
    "Coffee (Food & Grocery › Beverages)",
    "Laptops (Electronics › Computing)",
    "Running Shoes (Clothing › Footwear)",
]
COFFEE = "Nordvik dark roast espresso beans 1 kg"
SHOES = "Trail running shoes, breathable mesh"


def test_score_reads_real_logits_and_reuses_the_prefix_exactly():
    lm = local_lm("smollm2", cache=False)
    g = GeneralExpert("score")
    with dspy.context(lm=lm):
        first = g(product=COFFEE, candidates=CANDS).llm_logprobs
        other = g(product=SHOES, candidates=CANDS).llm_logprobs
        with track_usage() as tracker:
            again = g(product=COFFEE, candidates=CANDS).llm_logprobs  # only the prefix is kept
        lm.engine.process.request("reset")  # the child's llama.reset()
        fresh = g(product=COFFEE, candidates=CANDS).llm_logprobs  # from an empty KV cache
    assert math.isclose(sum(math.exp(x) for x in first), 1.0, rel_tol=1e-6)
    assert max(first) - min(first) > 1e-3  # a preference, not a uniform placeholder
    assert first != pytest.approx(other, abs=1e-3)  # it depends on the product
    assert again == pytest.approx(fresh, abs=1e-4) and first == pytest.approx(fresh, abs=1e-4)
    entries = [u for v in tracker.usage_data.values() for u in v]
    assert len(entries) == 1 and entries[0]["prompt_tokens"] > 0
