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


def load_program(path: str | Path, strategy: str | None = None):
    """A :class:`GeneralExpert` loaded from DSPy JSON saved by :func:`save_program` (or by
    ``module.save``; then give ``strategy`` if it is not ``zero_shot``)."""
    state = json.loads(Path(path).read_text(encoding="utf-8"))
    strategy = strategy or state.get("dualexpert", {}).get("strategy") or "zero_shot"
    program = GeneralExpert(strategy)
    names = {name for name, _ in program.named_predictors()}
    if "predict" in state and "predict" not in names:  # cot_rank saved before 0.2 (plain Predict)
        state["predict.predict"] = state.pop("predict")
        program.load_state(state)
    else:
        program.load(str(path))
    return program
