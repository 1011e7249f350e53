"""Whole-catalogue classification: two stages over chunks, bounded concurrent LLM calls against a
real OpenAI-compatible server on loopback (a fake one with a fixed latency), streaming files,
input order kept, and resume after kill -9 with nothing lost or duplicated."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dspy
import pytest

from dualexpert.batch import classify_iter, classify_products
from dualexpert.data import iter_catalogue
from dualexpert.general import GeneralExpert
from dualexpert.lm import hosted_lm
from dualexpert.pipeline import DualExpert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from conftest import train_demo_model  # noqa: E402
from fake_llm_server import FakeLLM  # noqa: E402
from kill_and_resume import kill_twice_then_finish  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_demo_model(tmp_path_factory.mktemp("stream"))


@pytest.fixture
def fake():
    srv = FakeLLM(delay=0.3).start()
    yield srv
    srv.stop()


def test_nothing_routed_gives_predicts_candidates(model):
    """Stage 1 is the batched domain expert: the same candidates and probabilities as
    ``predict_topk``, in input order, whatever the chunk size."""
    expert, held = model["expert"], model["held"][:20]
    dual = DualExpert(expert, GeneralExpert(), k=5, threshold=0.0)  # nothing routed
    want = expert.predict_topk(held, k=5)
    for chunk in (1, 7, 64):
        recs = list(classify_iter(dual, iter(held), chunk_size=chunk))
        assert [r["id"] for r in recs] == [p.id for p in held]
        for r, cands in zip(recs, want, strict=True):
            assert not r["routed"] and r["category"] == cands[0].id
            assert [c["id"] for c in r["candidates"]] == [c.id for c in cands]
            got = [c["probability"] for c in r["candidates"]]
            assert got == pytest.approx([c.probability for c in cands], abs=1e-5)


def test_concurrency_is_faster_and_identical(model, fake, tmp_path):
    expert, held = model["expert"], model["held"][:24]
    dual = DualExpert(expert, GeneralExpert(), k=3, threshold=1.01)  # everything routed
    lm = hosted_lm("openai/fake", api_base=fake.url, cache=False, num_retries=0)
    runs = {}
    with dspy.context(lm=lm, track_usage=True):
        for n in (1, 8):
            t0 = time.perf_counter()
            totals = classify_products(dual, held, tmp_path / f"c{n}.jsonl", concurrency=n)
            runs[n] = (time.perf_counter() - t0, totals)
    rows = {
        n: [json.loads(x) for x in (tmp_path / f"c{n}.jsonl").read_text().splitlines()]
        for n in runs
    }
    strip = [{k: r[k] for k in ("id", "category", "decision", "ranking")} for r in rows[1]]
    assert strip == [{k: r[k] for k in ("id", "category", "decision", "ranking")} for r in rows[8]]
    assert [r["id"] for r in rows[8]] == [p.id for p in held]  # input order
    assert all(r["routed"] and r["decision"] == "chosen" for r in rows[8])
    assert fake.max_in_flight >= 4  # requests really overlapped
    assert runs[8][0] < runs[1][0] / 3, (runs[1][0], runs[8][0])
    t = runs[8][1]
    assert t["products"] == 24 and t["routed"] == 24 and t["llm_calls"] == 24
    assert t["prompt_tokens"] == 24 * 100 and t["completion_tokens"] == 24 * 12
    assert t["products_per_second"] > 0


def test_the_next_chunks_requests_fill_free_slots(model, fake, tmp_path):
    """Request slots are shared across chunks: with chunks of 3 routed products and 8 slots,
    more than 3 requests are in flight at once (a chunk-by-chunk LLM stage never passes 3), and
    the records still come in input order."""
    expert, held = model["expert"], model["held"][:12]
    dual = DualExpert(expert, GeneralExpert(), k=3, threshold=1.01)  # everything routed
    lm = hosted_lm("openai/fake", api_base=fake.url, cache=False, num_retries=0)
    with dspy.context(lm=lm, track_usage=True):
        recs = list(classify_iter(dual, iter(held), chunk_size=3, concurrency=8))
    assert [r["id"] for r in recs] == [p.id for p in held]
    assert all(r["routed"] and r["decision"] == "chosen" for r in recs)
    assert fake.requests == 12 and fake.max_in_flight >= 5, fake.max_in_flight


@pytest.mark.parametrize(
    "mode,decision,why",
    [
        ("http500", "unavailable", "LMServerError"),
        ("http429", "unavailable", "LMRateLimitError"),
        ("stall", "unavailable", "timed out"),
        ("garbage", "invalid", "no valid answer"),
        ("off", "invalid", "no valid answer"),
    ],
)
def test_failing_llm_falls_back_per_product(model, tmp_path, mode, decision, why):
    """Each way a server can fail: every product is written, in order, with the domain
    expert's top-1 flagged with the reason; the totals count the fallbacks by reason."""
    srv = FakeLLM(delay=0.0, mode=mode).start()
    try:
        expert, held = model["expert"], model["held"][:5]
        dual = DualExpert(expert, GeneralExpert(), k=3, threshold=1.01)
        lm = hosted_lm("openai/fake", api_base=srv.url, cache=False, num_retries=0, timeout=1)
        t0 = time.perf_counter()
        with dspy.context(lm=lm, track_usage=True):
            totals = classify_products(dual, held, tmp_path / "o.jsonl", concurrency=2)
        took = time.perf_counter() - t0
    finally:
        srv.stop()
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in held]
    assert all(r["fallback"] and r["decision"] == decision for r in rows)
    assert all(r["category"] == r["candidates"][0]["id"] for r in rows)
    assert totals["fallback"] == 5 and sum(totals["fallback_reasons"].values()) == 5
    assert any(why in k for k in totals["fallback_reasons"]), totals["fallback_reasons"]
    assert took < 60


def test_circuit_breaker_stops_calling_a_dead_server(model):
    srv = FakeLLM(delay=0.0, mode="http500").start()
    try:
        expert, held = model["expert"], model["held"][:8]
        general = GeneralExpert(max_failures=3)
        dual = DualExpert(expert, general, k=3, threshold=1.01)
        lm = hosted_lm("openai/fake", api_base=srv.url, cache=False, num_retries=0)
        with dspy.context(lm=lm):
            preds = [dual(p) for p in held]
    finally:
        srv.stop()
    assert srv.requests == 3  # then no more calls
    assert all(p.fallback for p in preds)
    assert "not called again" in preds[-1].fallback_reason
    general._opened_at -= general.cooldown  # the cooldown has passed: one trial call
    srv2 = FakeLLM(delay=0.0).start()  # the server is back
    try:
        lm = hosted_lm("openai/fake", api_base=srv2.url, cache=False, num_retries=0)
        with dspy.context(lm=lm):
            back = dual(held[0])
    finally:
        srv2.stop()
    assert not back.fallback and srv2.requests == 1 and general.failures == 0


def test_streaming_reader_is_lazy(tmp_path):
    f = tmp_path / "big.jsonl"
    with f.open("w") as out:
        for i in range(1000):
            out.write(json.dumps({"id": str(i), "title": f"product {i}"}) + "\n")
        out.write("{not json\n")
    it = iter_catalogue(f)
    assert next(it).id == "0"  # the first product comes before the file is read through
    with pytest.raises(Exception, match="big.jsonl:1001"):
        list(it)


def _nothing_lost_or_duplicated(out: Path, held: list) -> None:
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted(p.id for p in held)  # 0 lost
    assert len(ids) == len(set(ids))  # 0 duplicated


def test_kill_9_twice_then_resume_loses_and_duplicates_nothing(model, tmp_path):
    """``dualexpert classify`` killed with SIGKILL at two moments, then rerun to the end."""
    d, held = model["dir"], model["held"]
    out = tmp_path / "out.jsonl"
    srv = FakeLLM(delay=0.05).start()
    cli = [sys.executable, "-m", "dualexpert.cli", "classify", str(d / "model")]
    cmd = cli + [str(d / "held.jsonl"), "--out", str(out), "--llm", "openai/fake"]
    cmd += ["--api-base", srv.url, "--threshold", "0.6", "--chunk-size", "4"]
    try:
        res = kill_twice_then_finish(cmd + ["--concurrency", "2"], out)
    finally:
        srv.stop()
    _nothing_lost_or_duplicated(out, held)
    totals = json.loads(res.stdout.strip().splitlines()[-1])
    assert totals["already_done"] >= 12 and totals["already_done"] + totals["products"] == len(held)


def test_predict_killed_twice_resumes_exactly(model, tmp_path):
    d, held = model["dir"], model["held"]
    out = tmp_path / "topk.jsonl"
    cli = [sys.executable, "-m", "dualexpert.cli", "predict", str(d / "model")]
    res = kill_twice_then_finish(
        cli + [str(d / "held.jsonl"), "--out", str(out), "--batch-size", "4", "--k", "2"], out
    )
    _nothing_lost_or_duplicated(out, held)
    assert "already there" in res.stderr


def test_repeated_and_empty_ids_resume_exactly(model, tmp_path):
    """Ids that repeat are kept once and counted; an empty id in a file of ids is a bad record
    (a row number in its place could be another product's id); a run cut short resumes to
    exactly the same output."""
    from dualexpert.batch import predict_products
    from dualexpert.data import ReadStats, RecordError

    expert = model["expert"]
    f = tmp_path / "ids.csv"
    rows = ["id,title"] + [f"{i % 7 if i % 3 else ''},product number {i}" for i in range(40)]
    f.write_text("\n".join(rows) + "\n")
    with pytest.raises(RecordError, match="ids.csv:2: field 'id': value is empty"):
        list(iter_catalogue(f))
    stats = ReadStats()
    prods = list(iter_catalogue(f, on_error="skip", stats=stats))
    assert stats.skipped == 14 and len(prods) == 26 and prods[0].id == "1"
    out = tmp_path / "p.jsonl"
    first = predict_products(expert, iter(prods), out, k=2, chunk_size=5)
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == first["products"]
    assert first["duplicate_ids"] == len(prods) - len(set(p.id for p in prods))
    full = out.read_text()
    out.write_text("".join(full.splitlines(keepends=True)[:4]))  # an interrupted run
    again = predict_products(expert, iter(prods), out, k=2, chunk_size=5)
    assert again["already_done"] == 4

    def key(text: str) -> list[tuple[str, str]]:  # batches differ, so compare the answers
        return [(r["id"], r["category"]) for r in map(json.loads, text.splitlines())]

    assert key(out.read_text()) == key(full)
