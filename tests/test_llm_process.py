"""The local LLM runs in a child process: a native crash (SIGILL, SIGKILL) or a hang there never
takes the run down. The products concerned keep the domain expert's answer, flagged with the
reason, and everything already written stays written.

Faults are injected in the real worker (SmolLM2 through llama.cpp) with
``DUALEXPERT_LLM_WORKER_FAULT=kind:N`` (fault on the N-th request the child serves).
"""

from __future__ import annotations

import json

import dspy
import pytest

from dualexpert.batch import classify_products
from dualexpert.demo import split_demo
from dualexpert.domain import DomainExpert
from dualexpert.general import GeneralExpert
from dualexpert.llm_process import LLMProcess, LLMUnavailable, describe_exit
from dualexpert.lm import local_lm
from dualexpert.models import resolve_llm
from dualexpert.pipeline import DualExpert

pytestmark = pytest.mark.slow

CANDS = ["Coffee (Beverages)", "Laptops (Computing)", "Running Shoes (Footwear)"]


def _proc(**kw) -> LLMProcess:
    cfg = {"model_path": resolve_llm("smollm2"), "n_ctx": 512, "n_threads": 1, "n_batch": 64}
    return LLMProcess({**cfg, "seed": 0}, **kw)


@pytest.fixture(scope="module")
def domain():
    train, held = split_demo(seed=0)
    expert = DomainExpert(epochs=1, batch_size=16, learning_rate=2e-4, seed=0)
    return expert.fit(train, progress=False), held


def test_describe_exit_names_the_signal():
    assert "SIGILL" in describe_exit(-4) and "setup.sh" in describe_exit(-4)
    assert "SIGKILL" in describe_exit(-9)
    assert describe_exit(3) == "exited with status 3"


def test_worker_answers_and_survives_a_bad_request():
    p = _proc(timeout=60)
    try:
        assert p.request("ping")["text"] is not None
        pid = p.pid
        with pytest.raises(LLMUnavailable, match="refused the request"):
            p.request("no-such-op")
        assert p.pid == pid  # a bad request is answered; the child lives on
        out = p.request(
            "score",
            messages=[{"role": "user", "content": "Pick 1 or 2."}],
            prefix='{"choice": ',
            options=["1", "2"],
        )
        assert len(out["logprobs"]) == 2 and out["prompt_tokens"] > 0
    finally:
        p.stop()


@pytest.mark.parametrize("kind,signame", [("sigill", "SIGILL"), ("sigkill", "SIGKILL")])
def test_crash_restarts_once_then_the_circuit_opens(monkeypatch, kind, signame):
    monkeypatch.setenv("DUALEXPERT_LLM_WORKER_FAULT", f"{kind}:2")
    p = _proc(timeout=60, max_restarts=1)
    try:
        p.request("ping")  # request 1 of the first child: fine
        with pytest.raises(LLMUnavailable, match=signame):
            p.request("ping")  # request 2: the child dies
        assert p.dead_reason is None
        p.request("ping")  # a fresh child (restart 1), its request 1
        with pytest.raises(LLMUnavailable, match=signame):
            p.request("ping")
        assert p.dead_reason is not None and "not started again" in p.dead_reason
        with pytest.raises(LLMUnavailable, match="not started again"):
            p.request("ping")  # immediate: no new child
        assert p.pid is None
    finally:
        p.stop()


def test_hang_past_the_timeout_is_stopped(monkeypatch):
    monkeypatch.setenv("DUALEXPERT_LLM_WORKER_FAULT", "hang:1")
    p = _proc(timeout=3, max_restarts=0)
    try:
        with pytest.raises(LLMUnavailable, match="did not answer within 3 s"):
            p.request("ping")
        assert p.pid is None  # the hung child was killed
    finally:
        p.stop()


def test_start_failure_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    p = LLMProcess(
        {"model_path": str(bad), "n_ctx": 256, "n_threads": 1, "n_batch": 64, "seed": 0},
        timeout=30,
    )
    with pytest.raises(LLMUnavailable, match="could not start.*broken.gguf"):
        p.request("ping")
    with pytest.raises(LLMUnavailable, match="could not start"):
        p.request("ping")  # not retried


@pytest.mark.parametrize(
    "fault,strategy,why,timeout",
    [
        ("sigill:2", "score", "SIGILL", 120),
        ("sigkill:3", "zero_shot", "SIGKILL", 120),
        ("hang:2", "score", "did not answer", 20),
    ],
)
def test_classify_completes_through_a_crashing_llm(
    monkeypatch, tmp_path, domain, fault, strategy, why, timeout
):
    """A crash or hang mid-run: every product is written, the ones the LLM could not answer
    keep the domain expert's top-1 flagged with the reason, the ones before keep the LLM's."""
    monkeypatch.setenv("DUALEXPERT_LLM_WORKER_FAULT", fault)
    expert, held = domain
    lm = local_lm("smollm2", max_tokens=64, cache=False, n_threads=1, timeout=timeout)
    dual = DualExpert(expert, GeneralExpert(strategy), k=3, threshold=1.01)  # route everything
    out = tmp_path / "out.jsonl"
    prods = held[:6]
    try:
        with dspy.context(lm=lm):
            totals = classify_products(dual, prods, out)
    finally:
        lm.engine.close()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in prods]  # nothing lost, in order
    assert all(r["routed"] for r in rows)
    assert rows[0]["decision"] != "unavailable"  # answered before the fault
    failed = [r for r in rows if r["decision"] == "unavailable"]
    assert failed, "the fault never surfaced"
    for r in failed:
        assert r["fallback"] is True
        assert r["category"] == r["candidates"][0]["id"]  # the domain expert's top-1
        assert r["fallback_reason"].startswith("LLM unavailable")
    assert any(why in r["fallback_reason"] for r in failed)
    assert totals["products"] == len(prods)
    assert sum(totals["fallback_reasons"].values()) == totals["fallback"] >= len(failed)
