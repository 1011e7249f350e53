"""The local LLM's child process: one llama.cpp model, served over JSON lines on stdin/stdout.

A native crash of llama.cpp (SIGILL from an instruction the OS has not enabled, SIGSEGV, an OOM
kill) must not take the caller's run down, so :class:`dualexpert.lm.LlamaCppEngine` never loads
llama.cpp in its own process: it starts ``python -m dualexpert.llm_worker CONFIG_JSON`` and
talks to it line by line. Every request is ``{"op": ..., ...}``; every answer is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. The first line the
worker writes is its readiness (``{"ok": true, "result": {"ready": ...}}``) once the model has
loaded.

Ops:

* ``chat``: ``llama.create_chat_completion(messages=..., **kwargs)``, the whole answer dict;
* ``chat_batch``: greedy completions of several message lists decoded together
  (:class:`dualexpert.llm_batch.BatchGenerator`, ``parallel`` sequences at a time), with an
  optional ``response_format`` grammar shared by all;
* ``score``: log-probabilities of single-token options after a chat prompt plus a prefix;
* ``loglik``: the log-likelihood of one text after each of several raw prompts (the general
  expert's ``channel`` strategy: how well each category explains the product's words);
* ``ping``: a one-token decode, for ``dualexpert doctor``.

Only JSON crosses the pipe (no pickle). C-level writes to stdout are sent to stderr, so they
cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _chat_prompt(llm: Any, messages: list[dict[str, str]]) -> str:
    """Render messages with the model's chat template, ending at the assistant turn."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    tmpl = llm.metadata.get("tokenizer.chat_template")
    if not tmpl:
        body = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return body + "<|assistant|>\n"
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(tmpl).render(
        messages=messages, add_generation_prompt=True, bos_token="", eos_token=""
    )


def _keep_shared_prefix(llm: Any, toks: list[int]) -> int:
    """Keep the KV cache of the tokens ``toks`` shares with what was evaluated last (never its
    last token, so there is always one to evaluate); returns how many were kept."""
    keep = 0
    for a, b in zip(llm.input_ids[: llm.n_tokens], toks[:-1], strict=False):
        if a != b:
            break
        keep += 1
    llm.n_tokens = keep
    return keep


def score_options(
    llm: Any, messages: list[dict[str, str]], prefix: str, options: list[str]
) -> dict[str, Any]:
    """Next-token log-probabilities of each option after the chat prompt and ``prefix``,
    normalised over the options; the KV cache of the prefix shared with the last prompt is
    kept (the signature's instructions are the same for every product)."""
    import numpy as np
    from llama_cpp import llama_get_logits_ith

    prompt = _chat_prompt(llm, messages) + prefix
    toks = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    keep = _keep_shared_prefix(llm, toks)
    llm.eval(toks[keep:])  # always evaluates at least the last token
    # Llama keeps no logits without logits_all: read the last token's from the context.
    logits = np.ctypeslib.as_array(
        llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
    ).astype(np.float64)
    first = [llm.tokenize(o.encode("utf-8"), add_bos=False, special=False)[0] for o in options]
    sub = logits[first]
    m = sub.max()
    logp = sub - (m + np.log(np.exp(sub - m).sum()))
    return {"logprobs": [float(x) for x in logp], "prompt_tokens": len(toks)}


def continuation_logliks(
    llm: Any, prompts: list[str], continuation: str, max_tokens: int
) -> dict[str, Any]:
    """The log-likelihood of ``continuation`` (its first ``max_tokens`` tokens) after each of
    ``prompts`` (raw text, no chat template), summed over its tokens. The KV cache of the
    prefix a prompt shares with the one before is kept; only the continuation's positions
    return logits."""
    import numpy as np

    cont = llm.tokenize(continuation.encode("utf-8"), add_bos=False, special=False)[:max_tokens]
    if not cont:
        raise ValueError("the continuation is empty")
    n_vocab, out, evaluated = llm.n_vocab(), [], 0
    for prompt in prompts:
        toks = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=False)
        if not toks or len(toks) + len(cont) > llm.n_ctx() or len(cont) > llm.n_batch:
            raise ValueError("the prompt and continuation do not fit the context")
        keep = _keep_shared_prefix(llm, toks)
        if len(toks) - 1 > keep:
            llm.eval(toks[keep:-1])  # the prompt but its last token, into the KV cache
        batch = [toks[-1], *cont[:-1]]  # each position predicts the next continuation token
        n_past = llm.n_tokens
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(batch) * n_vocab,))
        z = logits.reshape(len(batch), n_vocab).astype(np.float64)
        top = z.max(axis=1)
        lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        out.append(float(sum(z[i, t] - lse[i] for i, t in enumerate(cont))))
        llm.input_ids[n_past : n_past + len(batch)] = batch
        llm.n_tokens = n_past + len(batch)
        evaluated += len(toks) - keep + len(cont) - 1
    return {"logliks": out, "prompt_tokens": evaluated, "continuation_tokens": len(cont)}


def _ping(llm: Any) -> dict[str, Any]:
    out = llm.create_completion("1 + 1 =", max_tokens=1, temperature=0.0)
    return {"text": out["choices"][0]["text"]}


def _chat_batch(llm: Any, cfg: dict[str, Any], req: dict[str, Any]) -> list[dict[str, Any]]:
    from .llm_batch import BatchGenerator, grammar_for

    gen = cfg.get("_batch_generator")
    if gen is None:
        gen = cfg["_batch_generator"] = BatchGenerator(
            llm,
            n_seq=int(cfg.get("parallel") or 1),
            n_ctx=2 * int(cfg["n_ctx"]),  # one unified cache: the prefix once, then every tail
            n_batch=int(cfg["n_batch"]),
            n_threads=int(cfg["n_threads"]),
        )
    prompts = [_chat_prompt(llm, m) for m in req["messages"]]
    grammar = grammar_for(req.get("response_format"))
    return gen.generate(prompts, int(req["max_tokens"]), req.get("stop"), grammar)


def _handle(llm: Any, req: dict[str, Any], cfg: dict[str, Any] | None = None) -> Any:
    op = req.get("op")
    if op == "chat":
        return llm.create_chat_completion(messages=req["messages"], **req.get("kwargs", {}))
    if op == "chat_batch":
        return _chat_batch(llm, cfg or {}, req)
    if op == "score":
        return score_options(llm, req["messages"], req["prefix"], req["options"])
    if op == "loglik":
        return continuation_logliks(
            llm, req["prompts"], req["continuation"], int(req.get("max_tokens", 32))
        )
    if op == "ping":
        return _ping(llm)
    if op == "reset":
        llm.reset()
        return {}
    raise ValueError(f"unknown op {op!r}")


def _crash_for_tests() -> None:
    """Fault injection for the crash tests: DUALEXPERT_LLM_WORKER_FAULT=sigill|sigkill|hang
    (optionally ``:N`` to fault on the N-th request, 1-based)."""
    spec = os.environ.get("DUALEXPERT_LLM_WORKER_FAULT", "")
    if not spec:
        return
    kind, _, nth = spec.partition(":")
    count = int(os.environ.get("_DUALEXPERT_FAULT_COUNT", "0")) + 1
    os.environ["_DUALEXPERT_FAULT_COUNT"] = str(count)
    if count < int(nth or 1):
        return
    import signal
    import time

    if kind == "sigill":
        os.kill(os.getpid(), signal.SIGILL)
    elif kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "hang":
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(argv[0])
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # anything else written to stdout (C code included) goes to stderr
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        from llama_cpp import Llama

        llm = Llama(
            model_path=cfg["model_path"],
            n_ctx=cfg["n_ctx"],
            n_threads=cfg["n_threads"],
            n_threads_batch=cfg["n_threads"],  # prompt processing too (default: every core)
            n_batch=cfg["n_batch"],
            seed=cfg["seed"],
            verbose=False,
        )
    except Exception as e:  # a load failure is the parent's to report
        send({"ok": False, "error": f"could not load {cfg['model_path']}: {e}"})
        return 1
    send({"ok": True, "result": {"ready": True, "n_vocab": llm.n_vocab()}})
    for line in sys.stdin:
        if not line.strip():
            continue
        _crash_for_tests()
        try:
            send({"ok": True, "result": _handle(llm, json.loads(line), cfg)})
        except Exception as e:  # a bad request is answered, not fatal
            send({"ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
