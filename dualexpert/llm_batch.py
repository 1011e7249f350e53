"""Several chat completions decoded together in one llama.cpp batch (runs in the LLM worker).

On a CPU, decoding one sequence reads every weight of the model for each new token, so the
cores mostly wait on memory. Decoding B sequences in one ``llama_decode`` reads the weights
once for B tokens: throughput grows almost B-fold until the arithmetic catches up.

:class:`BatchGenerator` owns a second llama.cpp context over the worker's already-loaded model
(the weights are shared) with ``n_seq_max`` sequences and one unified KV cache:

* the prompts' common token prefix (the signature's instructions and few-shot demos) is
  evaluated once, tagged with every sequence id, and kept between calls, so the next batch with
  the same instructions starts after it;
* each prompt's own tail is then evaluated, and all sequences are decoded greedily, one token
  each per ``llama_decode``, until each meets an end-of-generation token, a stop string or
  ``max_tokens``.

Decoding is greedy (``temperature=0`` requests); a prompt may carry a GBNF grammar (DSPy's
``JSONAdapter`` sends a JSON schema, see :func:`grammar_for`), which a per-sequence llama.cpp
sampler enforces before the greedy pick, as ``create_chat_completion`` does one at a time.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def grammar_for(response_format: dict[str, Any] | None) -> str | None:
    """The GBNF grammar for an OpenAI-style ``response_format`` (``json_object`` with or
    without ``schema``), as llama-cpp-python builds it; ``None`` for free text."""
    import json

    from llama_cpp import llama_grammar

    if not response_format or response_format.get("type") != "json_object":
        return None
    if "schema" in response_format:
        try:
            return llama_grammar.json_schema_to_gbnf(json.dumps(response_format["schema"]))
        except Exception:  # a schema the converter cannot express: any JSON, as llama-cpp does
            log.warning("JSON schema not expressible as a grammar; constraining to any JSON")
    return llama_grammar.JSON_GBNF


class BatchGenerator:
    """Greedy generation for up to ``n_seq`` prompts at a time on ``llm``'s model."""

    def __init__(self, llm: Any, n_seq: int, n_ctx: int, n_batch: int, n_threads: int) -> None:
        import llama_cpp as L

        self.L = L
        self.llm = llm
        self.n_seq = n_seq
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        # the worker's own settings (flash attention, KV types, ...), so answers match its
        # one-at-a-time path; only the size and the sequences change
        cp = type(llm.context_params).from_buffer_copy(llm.context_params)
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = n_seq
        cp.kv_unified = True  # one cache: the shared prefix is stored once for all sequences
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        self.ctx = L.llama_init_from_model(llm._model.model, cp)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a {n_seq}-sequence context")
        self.vocab = L.llama_model_get_vocab(llm._model.model)
        self.n_vocab = llm.n_vocab()
        self.batch = L.llama_batch_init(n_batch, 0, n_seq)
        self.mem = L.llama_get_memory(self.ctx)
        self.cached: list[int] = []  # the prefix now in the cache, tagged with every sequence

    def close(self) -> None:
        if self.ctx:
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.ctx = None

    # -- low-level helpers ------------------------------------------------------------------
    def _decode(self, items: list[tuple[int, int, list[int], bool]]) -> list[int]:
        """Evaluate ``(token, pos, seq_ids, want_logits)`` items in chunks of ``n_batch``;
        returns the batch index (in its chunk) of each item that asked for logits, in order.
        Logits are read right after each chunk, so callers pass at most one chunk when they
        need them (decode steps) or none (prefix and tails, see :meth:`_eval_tails`)."""
        b = self.batch
        idx: list[int] = []
        for start in range(0, len(items), self.n_batch):
            chunk = items[start : start + self.n_batch]
            for i, (tok, pos, seqs, want) in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = pos
                b.n_seq_id[i] = len(seqs)
                for j, s in enumerate(seqs):
                    b.seq_id[i][j] = s
                b.logits[i] = want
                if want:
                    idx.append(i)
            b.n_tokens = len(chunk)
            rc = self.L.llama_decode(self.ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc}); the prompts may exceed n_ctx")
        return idx

    def _logits(self, i: int) -> Any:
        import numpy as np

        ptr = self.L.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _set_prefix(self, prefix: list[int]) -> None:
        """Make the cache hold exactly ``prefix`` for every sequence (reusing what matches)."""
        keep = 0
        for a, b in zip(self.cached, prefix, strict=False):
            if a != b:
                break
            keep += 1
        for s in range(self.n_seq):
            self.L.llama_memory_seq_rm(self.mem, s, keep, -1)
        seqs = list(range(self.n_seq))
        self._decode([(t, keep + i, seqs, False) for i, t in enumerate(prefix[keep:])])
        self.cached = list(prefix)

    # -- the op -----------------------------------------------------------------------------
    def _sampler(self, grammar: str) -> Any:
        L = self.L
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        g = L.llama_sampler_init_grammar(self.vocab, grammar.encode("utf-8"), b"root")
        if not g:
            L.llama_sampler_free(chain)
            raise ValueError("llama.cpp rejected the grammar")
        L.llama_sampler_chain_add(chain, g)
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        return chain

    def generate(
        self,
        prompts: list[str],
        max_tokens: int,
        stop: list[str] | None = None,
        grammar: str | None = None,
    ) -> list[dict[str, Any]]:
        """Greedy completions of ``prompts`` (already rendered with the chat template),
        each constrained by ``grammar`` (GBNF) when given.

        Continuous batching: up to ``n_seq`` prompts decode at once, and a finished sequence's
        slot is refilled with the next prompt in the same ``llama_decode`` as the others' next
        tokens, so the batch stays full to the end of the list.
        """
        import numpy as np

        if not prompts:
            return []
        toks = [self.llm.tokenize(p.encode("utf-8"), add_bos=False, special=True) for p in prompts]
        # the common prefix, leaving every prompt at least one token of its own
        n_pre = min(len(t) for t in toks) - 1
        for i in range(n_pre):
            if any(t[i] != toks[0][i] for t in toks[1:]):
                n_pre = i
                break
        for k, t in enumerate(toks):
            if len(t) + max_tokens > self.n_ctx:
                raise ValueError(
                    f"prompt {k}: {len(t)} tokens + max_tokens {max_tokens} exceed "
                    f"n_ctx {self.n_ctx}"
                )
        self._set_prefix(toks[0][:n_pre])
        stops = [x for x in (stop or []) if x]
        gen: list[list[int]] = [[] for _ in prompts]
        texts = [""] * len(prompts)
        finish = ["length"] * len(prompts)
        slot_of: dict[int, int] = {}  # prompt -> sequence id while it decodes
        samplers: dict[int, Any] = {}  # prompt -> its grammar sampler while it decodes
        nxt: dict[int, int] = {}  # prompt -> its next token (not yet in the cache)
        waiting = list(range(len(prompts)))
        free = list(range(self.n_seq))
        used = n_pre  # KV cells: the shared prefix plus each active prompt's worst case

        def admit(budget: int, alone: bool) -> list[tuple[int, int, list[int], bool]]:
            """Tails of waiting prompts for free slots, within ``budget`` tokens (a tail longer
            than that is admitted only ``alone``: then it may span several chunks)."""
            nonlocal used
            items: list[tuple[int, int, list[int], bool]] = []
            while waiting and free:
                k = waiting[0]
                tail = toks[k][n_pre:]
                cells = len(tail) + max_tokens
                if used + cells > self.n_ctx and slot_of:
                    break  # no room until a sequence finishes
                if len(items) + len(tail) > budget and (items or not alone):
                    break  # a later llama_decode takes it
                waiting.pop(0)
                s = free.pop(0)
                slot_of[k] = s
                if grammar:
                    samplers[k] = self._sampler(grammar)
                used += cells
                items += [(t, n_pre + j, [s], j == len(tail) - 1) for j, t in enumerate(tail)]
            return items

        def retire(k: int, why: str) -> None:
            nonlocal used
            s = slot_of.pop(k)
            finish[k] = why
            if k in samplers:
                self.L.llama_sampler_free(samplers.pop(k))
            self.L.llama_memory_seq_rm(self.mem, s, n_pre, -1)
            free.append(s)
            used -= len(toks[k]) - n_pre + max_tokens

        try:
            while waiting or slot_of:
                # one llama_decode: the next token of every decoding prompt, then new prompts' tails
                steps = [k for k in slot_of if k in nxt]
                items = [(nxt[k], len(toks[k]) + len(gen[k]), [slot_of[k]], True) for k in steps]
                owners = list(steps)
                fresh = admit(self.n_batch - len(items), alone=not items)
                items += fresh
                owners += [k for k, s in slot_of.items() if k not in nxt and k not in owners]
                if not items:
                    raise RuntimeError("batch generation made no progress")
                idx = self._decode(items)  # a tail longer than n_batch decodes in several chunks
                for k in steps:
                    gen[k].append(nxt[k])
                logits_at = dict(zip(owners, idx, strict=True))
                for k in list(slot_of):
                    if k in samplers:  # grammar, then greedy; the sampler accepts the token
                        tok = int(self.L.llama_sampler_sample(samplers[k], self.ctx, logits_at[k]))
                    else:
                        tok = int(np.argmax(self._logits(logits_at[k])))
                    if self.L.llama_vocab_is_eog(self.vocab, tok):
                        retire(k, "stop")
                        continue
                    text = self.llm.detokenize(gen[k] + [tok]).decode("utf-8", errors="ignore")
                    cut = min((text.find(x) for x in stops if x in text), default=-1)
                    if cut >= 0:
                        gen[k].append(tok)
                        texts[k] = text[:cut]
                        retire(k, "stop")
                        continue
                    texts[k] = text
                    if len(gen[k]) + 1 >= max_tokens:
                        gen[k].append(tok)
                        retire(k, "length")
                        continue
                    nxt[k] = tok
        finally:  # on an error too: no sampler leaks, and only the shared prefix stays cached
            for smp in samplers.values():
                self.L.llama_sampler_free(smp)
            for s in range(self.n_seq):
                self.L.llama_memory_seq_rm(self.mem, s, n_pre, -1)
        return [
            {
                "text": texts[k],
                "finish_reason": finish[k],
                "prompt_tokens": len(toks[k]),
                "completion_tokens": len(gen[k]),
            }
            for k in range(len(prompts))
        ]
