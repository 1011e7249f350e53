from __future__ import annotations

import pytest

from dualexpert.evaluation.routing import (
    choose_fusion_weight,
    choose_threshold,
    fused_choice,
    plot_curve,
    threshold_curve,
)


def rec(p1, p2, llm_first, gold):
    return {
        "candidates": [{"id": "A", "probability": p1}, {"id": "B", "probability": p2}],
        "ranking": [llm_first, "A" if llm_first == "B" else "B"],
        "fallback": False,
        "gold": [gold],
    }


RECORDS = [
    rec(0.95, 0.05, "B", "A"),  # confident and right; the LLM would break it
    rec(0.55, 0.45, "B", "B"),  # unsure and wrong; the LLM fixes it
    rec(0.60, 0.40, "A", "A"),  # unsure, both right
    rec(0.50, 0.10, "B", "A"),  # unsure; the LLM picks a far less likely candidate wrongly
]


def test_threshold_curve_and_choice():
    curve = threshold_curve(RECORDS, thresholds=[0.0, 0.7, 1.001])
    by_t = {c["threshold"]: c for c in curve}
    assert by_t[0.0]["llm_traffic"] == 0 and by_t[0.0]["accuracy"] == 0.75
    assert by_t[0.7]["llm_traffic"] == 0.75 and by_t[0.7]["accuracy"] == 0.75
    assert by_t[1.001]["llm_traffic"] == 1 and by_t[1.001]["accuracy"] == 0.5
    best = choose_threshold(curve)
    assert best["threshold"] == 0.0  # equal accuracy, less traffic wins


def test_fusion_weight():
    assert fused_choice(RECORDS[3], None) == "B"
    assert fused_choice(RECORDS[3], 1.0) == "A"  # log(0.5)-0 > log(0.1)-... gap too big
    assert fused_choice(RECORDS[1], 1.0) == "B"  # gap small: the LLM overrides
    w, scores = choose_fusion_weight(RECORDS[1:])
    assert scores["llm"] == pytest.approx(2 / 3) and w is not None and scores[str(w)] == 1.0


def test_plot(tmp_path):
    out = plot_curve(threshold_curve(RECORDS), tmp_path / "fig.png")
    assert out.stat().st_size > 5000


def test_fusion_uses_llm_logprobs_when_recorded():
    import math

    r = rec(0.55, 0.45, "B", "B")
    r["llm_logprobs"] = [math.log(0.3), math.log(0.7)]
    # log .55 + w log .3  vs  log .45 + w log .7: B wins once w > ~0.24
    assert fused_choice(r, 0.1) == "A" and fused_choice(r, 0.5) == "B"


def test_the_default_fusion_weight_follows_the_general_expert():
    """auto: the reranker fused at 1, the bundled local LLM as a rank at 0.25 (its pick as is
    lost accuracy in every measurement), a hosted LLM's pick as is (the paper)."""
    import dspy

    from dualexpert.lm import hosted_lm, local_lm
    from dualexpert.pipeline import (
        LOCAL_LLM_FUSION_WEIGHT,
        RERANKER_FUSION_WEIGHT,
        resolve_fusion_weight,
    )

    local = local_lm("smollm2")  # no process starts until the first request
    hosted = hosted_lm("openai/some-model", api_base="http://127.0.0.1:9/v1")
    assert LOCAL_LLM_FUSION_WEIGHT == 0.25
    assert resolve_fusion_weight("auto", reranker=False, lm=local) == 0.25
    assert resolve_fusion_weight("auto", reranker=False, lm=hosted) is None
    assert resolve_fusion_weight("auto", reranker=True, lm=local) == RERANKER_FUSION_WEIGHT
    with dspy.context(lm=local):  # DSPy's configured LM by default
        assert resolve_fusion_weight("auto", reranker=False) == 0.25
    with dspy.context(lm=hosted):
        assert resolve_fusion_weight("auto", reranker=False) is None
    assert resolve_fusion_weight("none", reranker=False, lm=local) is None
    assert resolve_fusion_weight("pick", reranker=True) is None
    assert resolve_fusion_weight(None, reranker=True) == RERANKER_FUSION_WEIGHT
    assert resolve_fusion_weight(None, reranker=False, lm=local) is None
    assert resolve_fusion_weight("0.5", reranker=False, lm=local) == 0.5
    assert resolve_fusion_weight(2.0, reranker=True) == 2.0
    with pytest.raises(ValueError, match="'heavy'"):
        resolve_fusion_weight("heavy", reranker=False)
    # the channel strategy's log-probabilities have a weight of their own
    assert resolve_fusion_weight("auto", False, lm=local, strategy="channel") == 0.3
    assert resolve_fusion_weight("auto", False, lm=hosted, strategy="channel") is None


def test_the_default_strategy_follows_the_llm(tmp_path):
    """auto: channel with the bundled local LLM (its likelihoods paid on MWPD where its answers
    did not), zero_shot with a hosted LLM (a chat API returns text only); a named strategy
    stays; load_dual_expert builds it with the matching fusion weight."""
    import dspy
    from _dspy_fakes import tiny_domain_expert

    from dualexpert.lm import hosted_lm, local_lm
    from dualexpert.pipeline import load_dual_expert, resolve_strategy

    local = local_lm("smollm2")
    hosted = hosted_lm("openai/some-model", api_base="http://127.0.0.1:9/v1")
    assert resolve_strategy("auto", local) == "channel"
    assert resolve_strategy("auto", hosted) == "zero_shot"
    assert resolve_strategy("rank", local) == "rank"
    tiny_domain_expert(tmp_path / "m")
    with dspy.context(lm=local):
        de = load_dual_expert(tmp_path / "m", general="llm")
        assert de.general.strategy == "channel" and de.fusion_weight == 0.3
        assert de.threshold == 0.8  # the channel's own routing threshold
        de = load_dual_expert(tmp_path / "m", strategy="zero_shot", general="llm")
        assert de.general.strategy == "zero_shot" and de.fusion_weight == 0.25
        assert de.threshold == 0.9
        de = load_dual_expert(tmp_path / "m", general="llm", threshold=0.95)
        assert de.general.strategy == "channel" and de.threshold == 0.95  # given: kept
    with dspy.context(lm=hosted):
        de = load_dual_expert(tmp_path / "m", general="llm")
        assert de.general.strategy == "zero_shot" and de.fusion_weight is None
        assert de.threshold == 0.9


def test_the_channel_strategy_routes_below_its_own_threshold():
    """A product at 0.85 goes to a zero_shot general expert but not to a channel one (between
    0.8 and 0.9 the channel broke 9 MWPD products and fixed 1); a threshold given is kept."""
    from test_general import FixedDomain

    from dualexpert.general import GeneralExpert
    from dualexpert.pipeline import DualExpert, resolve_threshold

    assert resolve_threshold(None, GeneralExpert("channel")) == 0.8
    assert resolve_threshold(None, GeneralExpert("zero_shot")) == 0.9
    assert resolve_threshold(None, object()) == 0.9  # a reranker has no strategy
    assert resolve_threshold(0.0, GeneralExpert("channel")) == 0.0
    unsure = [0.85, 0.1, 0.05]
    channel = DualExpert(FixedDomain(unsure), GeneralExpert("channel"), k=3)
    out = channel(product="anything")
    assert not out.routed and "0.8" in out.route_reason
    asked = DualExpert(FixedDomain(unsure), GeneralExpert("channel"), k=3, threshold=0.9)
    assert isinstance(asked.route(asked.retriever("anything").candidates), dict)  # routed
    assert DualExpert(FixedDomain(unsure), GeneralExpert("zero_shot"), k=3).threshold == 0.9
