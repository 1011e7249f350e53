"""The parent side of the local LLM's child process (see :mod:`dualexpert.llm_worker`).

:class:`LLMProcess` starts the worker, sends one JSON request at a time and waits for the
answer with a timeout. Whatever goes wrong in the child (a native crash such as SIGILL or
SIGSEGV, an OOM kill, a hang past the timeout, a model that cannot load) surfaces here as one
:class:`LLMUnavailable` with a sentence that says what happened and what to do; the caller's
process is never taken down. After ``max_restarts`` crashes the process is not started again
(a circuit breaker: a build that faults on this CPU would fault on every product).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class LLMUnavailable(RuntimeError):
    """The LLM could not answer (crash, hang, failed start, transport error).

    Callers that can fall back (the general expert keeps the domain expert's answer) catch it;
    ``reason`` is a short sentence for the output record.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def llm_failure(exc: BaseException) -> str | None:
    """The reason to record when ``exc`` means the LLM could not answer this request, or None
    when it is something else (a bug, a configuration error the user must fix first).

    Counted as "could not answer": :class:`LLMUnavailable` (also when DSPy wraps it), and DSPy's
    transport, timeout, server, rate-limit (after DSPy's own retries) and context-window errors.
    """
    from dspy.utils.exceptions import (
        ContextWindowExceededError,
        LMRateLimitError,
        LMServerError,
        LMTimeoutError,
        LMTransportError,
    )

    seen: BaseException | None = exc
    while seen is not None:  # DSPy raises its own error "from" the engine's
        if isinstance(seen, LLMUnavailable):
            return seen.reason
        seen = seen.__cause__
    transient = (
        LMTransportError,
        LMTimeoutError,
        LMServerError,
        LMRateLimitError,
        ContextWindowExceededError,
    )
    if isinstance(exc, transient):
        return f"{type(exc).__name__}: {exc}"
    return None


_HINTS = {
    signal.SIGILL: "illegal instruction: this llama.cpp build uses CPU instructions that this "
    "machine's OS does not enable; rebuild it portably with `bash scripts/setup.sh` and check "
    "with `dualexpert doctor`",
    signal.SIGSEGV: "segmentation fault in llama.cpp; check the model file with "
    "`dualexpert doctor`",
    signal.SIGKILL: "killed (often the kernel's out-of-memory killer); free memory or use a "
    "smaller model",
    signal.SIGBUS: "bus error in llama.cpp (a truncated or changed model file?); run "
    "`dualexpert doctor`",
}


def describe_exit(code: int | None) -> str:
    """A sentence for a child's exit status (negative: killed by that signal)."""
    if code is None:
        return "still running"
    if code < 0:
        sig = signal.Signals(-code)
        return f"died with {sig.name} ({_HINTS.get(sig, 'a native crash')})"
    return f"exited with status {code}"


class LLMProcess:
    """One llama.cpp model in a child process; requests are serialised with a lock."""

    def __init__(
        self,
        config: dict[str, Any],
        timeout: float = 300.0,
        start_timeout: float = 300.0,
        max_restarts: int = 1,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.max_restarts = max_restarts
        self.crashes = 0
        self.dead_reason: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _reader(self, proc: subprocess.Popen[str], answers: queue.Queue) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                answers.put(json.loads(line))
            except ValueError:
                log.debug("llm worker wrote a non-JSON line: %r", line[:200])
        answers.put(None)  # EOF: the child has gone

    def _start(self) -> None:
        cmd = [sys.executable, "-m", "dualexpert.llm_worker", json.dumps(self.config)]
        env = dict(os.environ, OMP_NUM_THREADS=str(self.config.get("n_threads", 1)))
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the child's warnings reach the user's terminal
            text=True,
            encoding="utf-8",
            env=env,
        )
        self._answers = queue.Queue()
        threading.Thread(target=self._reader, args=(self._proc, self._answers), daemon=True).start()
        ready = self._wait(self.start_timeout, "start")
        if not ready.get("ok"):
            self.dead_reason = f"the local LLM could not start: {ready.get('error')}"
            self.stop()
            raise LLMUnavailable(self.dead_reason)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def _wait(self, timeout: float, what: str) -> dict[str, Any]:
        assert self._proc is not None
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            self.crashes += 1
            self._maybe_open_circuit()
            raise LLMUnavailable(
                f"the local LLM did not answer within {timeout:g} s ({what}); it was stopped. "
                "Raise the timeout for long generations, or check the machine's load"
            ) from None
        if answer is None:  # EOF: the child died
            code = self._proc.wait()
            self.stop()
            self.crashes += 1
            why = f"the local LLM process {describe_exit(code)}"
            self._maybe_open_circuit(why)
            raise LLMUnavailable(why)
        return answer

    def _maybe_open_circuit(self, why: str | None = None) -> None:
        if self.crashes > self.max_restarts and self.dead_reason is None:
            self.dead_reason = (
                f"{why or 'the local LLM failed'}; it failed {self.crashes} times, so it is not "
                "started again in this run"
            )
            log.error("%s", self.dead_reason)

    # -- requests -----------------------------------------------------------------------------
    def request(self, op: str, timeout: float | None = None, **payload: Any) -> Any:
        """Send one request and return its result; raises :class:`LLMUnavailable`.

        ``timeout``: seconds this request may take (default: the process's ``timeout``)."""
        with self._lock:
            if self.dead_reason is not None:
                raise LLMUnavailable(self.dead_reason)
            if self._proc is None or self._proc.poll() is not None:
                t0 = time.perf_counter()
                self._start()
                log.info("local LLM process %s ready in %.1f s", self.pid, time.perf_counter() - t0)
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps({"op": op, **payload}) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # the child died; _wait reports how
            answer = self._wait(timeout or self.timeout, op)
        if not answer.get("ok"):  # the child is fine; this one request failed
            raise LLMUnavailable(f"the local LLM refused the request: {answer.get('error')}")
        return answer["result"]

    def __del__(self) -> None:  # no orphaned llama.cpp processes
        try:
            self.stop()
        except Exception:
            pass
