"""The decoder warm-up schedule (paper 4.3): learning-rate multipliers per parameter group.

Steps ``[0, frozen_steps)``: the encoder is frozen (multiplier 0) and only the auxiliary loss is
trained; the paper uses the first 50% of the data. Then the encoder's rate warms up linearly over
``encoder_warmup_steps`` (30% of training in the paper) and everything decays linearly to 0.
The heads (classifier, decoder) follow the usual linear warm-up and decay.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupSchedule:
    total_steps: int
    frozen_steps: int = 0
    encoder_warmup_steps: int = 0
    head_warmup_steps: int = 0

    def _decay(self, step: int) -> float:
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps))

    def encoder(self, step: int) -> float:
        if step < self.frozen_steps:
            return 0.0
        since = step - self.frozen_steps
        if since < self.encoder_warmup_steps:
            return (since + 1) / (self.encoder_warmup_steps + 1) * self._decay(step)
        return self._decay(step)

    def head(self, step: int) -> float:
        if step < self.head_warmup_steps:
            return (step + 1) / (self.head_warmup_steps + 1)
        return self._decay(step)

    def aux_only(self, step: int) -> bool:
        """During the frozen-encoder phase the loss is the auxiliary loss alone."""
        return step < self.frozen_steps
