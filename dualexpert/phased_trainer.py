"""``PhasedTrainer``: the transformers ``Trainer`` both bundled trainers build on.

A subclass says how a batch's loss is computed (:meth:`PhasedTrainer.batch_loss`) and which
training phase a step is in (:meth:`PhasedTrainer.phase`); the phase is logged with every entry.
Checkpoints, resume, seeds and progress stay the Trainer's.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import Trainer, TrainerCallback


class PhasedTrainer(Trainer):
    def batch_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[Any, Any]:
        """``(loss, outputs)`` of one batch."""
        raise NotImplementedError

    def phase(self, step: int) -> str | None:
        """The training phase at ``step`` (logged), or None."""
        return None

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        loss, out = self.batch_loss(model, inputs)
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        phase = self.phase(self.state.global_step)
        if phase is not None:
            logs["phase"] = phase
        super().log(logs, *args, **kwargs)


class TimedCheckpoints(TrainerCallback):
    """Asks for a checkpoint every ``minutes`` and at each epoch's end, so a run of any length
    can resume (what the trainers use when ``save_steps`` is None)."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60
        self.last = time.monotonic()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.last = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # under DDP every process must decide alike: clocks differ, so only epoch ends count
        if args.world_size == 1 and time.monotonic() - self.last >= self.seconds:
            control.should_save = True
            self.last = time.monotonic()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        control.should_save = True
        self.last = time.monotonic()
