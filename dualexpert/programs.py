"""Save and load a compiled general expert as DSPy JSON (``module.save``), with a ``dualexpert``
entry that records which strategy it was compiled for."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dspy

from .estimator import library_version
from .general import GeneralExpert


def strip_lms(program: dspy.Module) -> None:
    """Drop per-predictor LMs an optimiser left behind: the LM is runtime configuration."""
    for _, p in program.named_predictors():
        p.lm = None


def save_program(program: dspy.Module, path: str | Path, meta: Mapping[str, Any] | None = None):
    """Save a general expert as DSPy JSON (``module.save``), plus a ``dualexpert`` entry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prog = program.deepcopy()
    strip_lms(prog)
    prog.save(str(path))
    state = json.loads(path.read_text(encoding="utf-8"))
    info = {"program": type(program).__name__, "library_version": library_version()}
    if hasattr(program, "strategy"):
        info["strategy"] = program.strategy
    info.update(meta or {})
    state["dualexpert"] = info
    path.write_text(json.dumps(state, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def saved_strategy(path: str | Path) -> str | None:
    """The strategy a program file records (:func:`save_program` writes it), or None."""
    return _recorded_strategy(_read_state(path))


def _recorded_strategy(state: dict[str, Any]) -> str | None:
    info = state.get("dualexpert")
    return info.get("strategy") if isinstance(info, dict) else None


def _read_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"program {path} does not exist")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"program {path} is not DSPy JSON ({e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"program {path} is not DSPy JSON (not an object)")
    return state


def load_program(path: str | Path, strategy: str | None = None):
    """A :class:`GeneralExpert` loaded from DSPy JSON saved by :func:`save_program` (or by
    ``module.save``; then give ``strategy`` if it is not ``zero_shot``).

    A ``strategy`` other than the one the file records is an error: DSPy would match the saved
    fields to the other strategy's by position and load a program that asks the wrong thing.
    """
    state = _read_state(path)
    recorded = _recorded_strategy(state)
    if strategy and recorded and strategy != recorded:
        raise ValueError(
            f"program {path} was compiled for strategy {recorded!r}, not {strategy!r}: "
            f"use --strategy {recorded} (or leave it out)"
        )
    strategy = recorded or strategy or "zero_shot"
    program = GeneralExpert(strategy)
    names = {name for name, _ in program.named_predictors()}
    if "predict" in state and "predict" not in names:  # cot_rank saved before 0.2 (plain Predict)
        state["predict.predict"] = state.pop("predict")
    missing = sorted(names - set(state))
    if missing:
        raise ValueError(
            f"program {path} holds no general expert for strategy {strategy!r} (no "
            f"{', '.join(missing)})"
        )
    program.load_state(state)
    return program
