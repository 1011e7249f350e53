"""A cap on LLM calls for optimisation runs, and the projection printed before a run starts.

:func:`budgeted_lm` returns a copy of a ``dspy.LM`` that counts every request (cache hits
included, so the count never undercounts) and refuses requests past ``max_calls`` with
:class:`BudgetExceeded`. Optimisers get this LM as their task, prompt and reflection model, so
no call of the run escapes the count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BudgetExceeded(RuntimeError):
    """An LLM request past the run's ``max_calls`` was refused."""


@dataclass
class Budget:
    """A thread-safe counter of LLM requests with a hard cap."""

    max_calls: int
    progress: Callable[[int], None] | None = None
    calls: int = 0
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def left(self) -> int:
        return max(0, self.max_calls - self.calls)

    def take(self) -> None:
        with self._lock:
            if self.calls >= self.max_calls:
                self.refused += 1
                raise BudgetExceeded(f"LLM call budget of {self.max_calls} calls is spent")
            self.calls += 1
            n = self.calls
        if self.progress is not None:
            self.progress(n)


class _Budgeted:
    """Mixed into a copy of an LM's class: count, then call the LM as usual."""

    _budget: Budget

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._budget.take()
        return super().__call__(*args, **kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        self._budget.take()
        return await super().acall(*args, **kwargs)

    def dump_state(self) -> dict[str, Any]:
        # serialise as the LM it wraps, never as this runtime-only class
        state = super().dump_state()
        base = type(self).__mro__[2]
        state["_dspy_lm_class"] = f"{base.__module__}.{base.__qualname__}"
        return state


_CLASSES: dict[type, type] = {}


def budgeted_lm(lm: Any, budget: Budget) -> Any:
    """A copy of ``lm`` whose requests count against ``budget`` (copies of it share the count)."""
    if isinstance(lm, _Budgeted):
        lm = unwrap_lm(lm)
    cls = type(lm)
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Budgeted{cls.__name__}", (_Budgeted, cls), {})
    out = lm.copy()
    out.__class__ = _CLASSES[cls]
    out._budget = budget
    return out


def unwrap_lm(lm: Any) -> Any:
    """The plain LM behind a budgeted one (a copy sharing its engine)."""
    if not isinstance(lm, _Budgeted):
        return lm
    out = lm.copy()
    out.__class__ = type(lm).__mro__[2]
    out.__dict__.pop("_budget", None)
    return out
