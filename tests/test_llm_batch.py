"""Batched decoding on the local engine: several greedy chat completions in one llama.cpp batch
(real SmolLM2-135M), the micro-batcher that gathers concurrent calls, and a parallel
rationale run."""

from __future__ import annotations

import json
import threading
import time

import dspy
import pytest
from relevance_fixtures import write_pairs

from dualexpert.adapters import BriefChatAdapter
from dualexpert.lm import LlamaCppEngine, MicroBatcher, local_lm
from dualexpert.relevance import RationaleWriter, load_pairs, write_rationales

PROMPTS = [
    "Name a fruit that is yellow.",
    "What is 2 + 3? Answer with a number.",
    "Write one word that rhymes with cat.",
    "Say hello in French.",
    "Which planet is closest to the sun?",
]


def _messages(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a terse assistant. Answer in a few words."},
        {"role": "user", "content": text},
    ]


def test_micro_batcher_gathers_concurrent_calls_and_keeps_keys_apart():
    seen: list[list[tuple]] = []
    gate = threading.Event()

    def run(items):
        gate.wait(5)  # hold the first batch so the other callers queue up behind it
        seen.append(list(items))
        return [f"{text}:{len(items)}" for text, _ in items]

    mb = MicroBatcher(run, max_items=3)
    out: dict[str, str] = {}

    def call(text: str, key: int) -> None:
        out[text] = mb.submit((text, key))

    threads = [threading.Thread(target=call, args=(f"t{i}", i % 2)) for i in range(7)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    gate.set()
    for t in threads:
        t.join(10)
    assert sorted(out) == [f"t{i}" for i in range(7)]
    assert all(len({key for _, key in batch}) == 1 for batch in seen)  # one key per batch
    assert all(len(batch) <= 3 for batch in seen)
    assert max(len(batch) for batch in seen) > 1  # callers that waited were served together
    assert sum(len(batch) for batch in seen) == 7
    for text, answer in out.items():  # each caller got the answer to its own item
        assert answer.startswith(text + ":")


def test_micro_batcher_gives_every_caller_the_failure():
    def run(items):
        raise RuntimeError("llm down")

    mb = MicroBatcher(run, max_items=4)
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            mb.submit((i, None))
        except RuntimeError as e:
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(errors) == 3 and all("llm down" in str(e) for e in errors)


@pytest.mark.slow
def test_batched_greedy_answers_match_one_at_a_time():
    one = LlamaCppEngine("smollm2", n_threads=2)
    many = LlamaCppEngine("smollm2", n_threads=2, parallel=2)  # 5 prompts through 2 slots
    try:
        alone = [
            one.process.request(
                "chat", messages=_messages(p), kwargs={"max_tokens": 24, "temperature": 0.0}
            )["choices"][0]["message"]["content"]
            for p in PROMPTS
        ]
        res = many.process.request(
            "chat_batch", messages=[_messages(p) for p in PROMPTS], max_tokens=24, stop=None
        )
        texts = [r["text"] for r in res]
        # rows of one batch go through other matrix kernels than a single row, so a near-tie
        # between two tokens can break the other way; a mix-up of positions, sequences or the
        # shared prefix would change every answer
        assert sum(t == a for t, a in zip(texts, alone, strict=True)) >= 3
        assert all(t[:12] == a[:12] for t, a in zip(texts, alone, strict=True))
        # the same batch again starts from the prefix kept in the cache: the same answers
        again = many.process.request(
            "chat_batch", messages=[_messages(p) for p in PROMPTS], max_tokens=24, stop=None
        )
        assert [r["text"] for r in again] == texts
        assert all(r["completion_tokens"] <= 24 for r in res)
        assert {r["finish_reason"] for r in res} <= {"stop", "length"}
        # a stop string cuts the answer and ends that sequence
        cut = many.process.request(
            "chat_batch", messages=[_messages(PROMPTS[0])], max_tokens=24, stop=[alone[0][2:4]]
        )[0]
        assert cut["text"] == alone[0][:2] and cut["finish_reason"] == "stop"
    finally:
        one.close()
        many.close()


@pytest.mark.slow
def test_parallel_rationale_run_uses_batches_and_resumes(tmp_path):
    pairs = load_pairs(write_pairs(tmp_path)[0])[:6]
    lm = local_lm("smollm2", max_tokens=64, cache=False, parallel=3)
    out = tmp_path / "r.jsonl"
    writer = RationaleWriter(max_tokens=40)
    with dspy.context(lm=lm):
        first = write_rationales(pairs[:2], out, writer, parallel=3)
        totals = write_rationales(pairs, out, writer, parallel=3)
    engine = lm.engine if hasattr(lm, "engine") else lm.kwargs["engine"]
    try:
        assert first["written"] + first["failed"] == 2
        assert totals["skipped"] == first["written"]
        assert totals["written"] + totals["failed"] == len(pairs) - first["written"]
        rows = [r for r in out.read_text().splitlines() if r]
        assert len(rows) == first["written"] + totals["written"]
        assert engine.counts["single"] == 0  # the brief adapter's requests all went batched
        assert engine.counts["batched"] == len(pairs)
        assert engine.counts["batches"] < len(pairs)  # and some shared a llama.cpp batch
        assert totals["prompt_tokens"] > 0 and totals["completion_tokens"] > 0
    finally:
        engine.close()


def test_brief_chat_adapter_formats_and_parses():
    from dualexpert.signatures import WriteRationale

    ad = BriefChatAdapter()
    demos = RationaleWriter().write.demos
    msgs = ad.format(WriteRationale, demos, {"query": "q", "title": "t", "label": "relevant"})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "Respond with" not in msgs[-1]["content"]  # no per-request format reminder
    assert msgs[2]["content"] == demos[0].rationale  # demos answer with the bare value
    assert "[[ ## rationale ## ]]" not in msgs[0]["content"]
    assert ad.parse(WriteRationale, "  Fits the query.\n") == {"rationale": "Fits the query."}
    # an answer in ChatAdapter's format still parses
    chat = "[[ ## rationale ## ]]\nFits.\n\n[[ ## completed ## ]]"
    assert ad.parse(WriteRationale, chat) == {"rationale": "Fits."}


def test_brief_chat_adapter_keeps_chat_format_for_several_outputs():
    class TwoOut(dspy.Signature):
        """Answer."""

        question: str = dspy.InputField()
        answer: str = dspy.OutputField()
        why: str = dspy.OutputField()

    ad = BriefChatAdapter()
    msgs = ad.format(TwoOut, [], {"question": "q"})
    assert "[[ ## answer ## ]]" in msgs[0]["content"] and "Respond with" not in msgs[-1]["content"]
    with pytest.raises(dspy.utils.exceptions.AdapterParseError):
        ad.parse(TwoOut, "no headers")


def test_brief_adapter_through_dummy_lm():
    lm = dspy.utils.DummyLM([{"rationale": "A short rationale."}])
    with dspy.context(lm=lm, adapter=None):  # no adapter set: the writer picks the brief one
        pred = RationaleWriter()(query="q", title="t", label=0)
    assert pred.rationale == "A short rationale."
    sent = lm.history[-1]["messages"]
    assert "Respond with" not in sent[-1]["content"] and "not relevant" in sent[-1]["content"]


def test_parallel_sizes_only_the_local_engine():
    from dualexpert.lm import get_lm

    hosted = get_lm("openai/gpt-4o-mini", parallel=8)
    assert "parallel" not in hosted.kwargs  # not sent to the provider
    local = get_lm("smollm2", parallel=8)  # nothing starts until the first call
    assert local.engine.parallel == 8 and local.engine.dump_state()["parallel"] == 8
    with pytest.raises(ValueError, match="parallel"):
        LlamaCppEngine("smollm2", parallel=0)
    with pytest.raises(ValueError, match="parallel"):
        write_rationales([], "unused.jsonl", parallel=0)


@pytest.mark.slow
def test_json_schema_answers_batch_under_their_grammar():
    from dualexpert.general import GeneralExpert

    cands = [
        "Coffee (Food & Grocery › Beverages)",
        "Laptops (Electronics › Computing)",
        "Running Shoes (Clothing › Footwear)",
    ]
    products = [
        "Nordvik dark roast espresso beans 1 kg",
        "UltraBook 14 inch laptop, 16 GB RAM",
        "Trail running shoe, men's size 10",
        "Decaf ground coffee, 500 g",
    ]
    lm = local_lm("smollm2", max_tokens=96, cache=False, parallel=4)
    expert = GeneralExpert("zero_shot")
    examples = [
        dspy.Example(product=p, candidates=cands).with_inputs("product", "candidates")
        for p in products
    ]
    try:
        with dspy.context(lm=lm):
            preds = expert.batch(examples, num_threads=4, disable_progress_bar=True)
        # greedy calls went batched; only a sampled retry (temperature > 0) runs alone
        greedy = sum(1 for h in lm.history if not h["kwargs"].get("temperature"))
        assert greedy >= len(products) and lm.engine.counts["batched"] == greedy
        assert lm.engine.counts["single"] == len(lm.history) - greedy
        assert lm.engine.counts["batches"] < greedy
        for pred in preds:  # every answer parsed: the grammar held in the batch
            assert 0 <= pred.index < len(cands) and sorted(pred.ranking) == [0, 1, 2]
            assert pred.decision in {"chosen", "none", "cannot_decide", "invalid"}
        raws = [h["outputs"][0] for h in lm.history]
        assert all(set(json.loads(r)) >= {"choice", "reason"} for r in raws)
    finally:
        lm.engine.close()
