"""Training plumbing on the transformers ``Trainer``: progress, checkpoints, resume, seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..phased_trainer import PhasedTrainer
from ..training import grouped_adamw
from .losses import TwoPhaseLoss


class TextLabelDataset(Dataset):
    def __init__(self, texts: Sequence[str], labels: Sequence[int]):
        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        self.texts, self.labels = list(texts), list(labels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"text": self.texts[i], "label": self.labels[i]}


class TokenizingCollator:
    """Tokenises a batch on the fly with dynamic padding."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [b["text"] for b in batch],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        enc["labels"] = torch.tensor([b["label"] for b in batch], dtype=torch.long)
        return dict(enc)


class TwoPhaseTrainer(PhasedTrainer):
    """``Trainer`` whose loss is a :class:`TwoPhaseLoss` driven by the global step."""

    def __init__(
        self, *args: Any, loss_fn: TwoPhaseLoss, head_lr_multiplier: float = 1.0, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn
        self.head_lr_multiplier = head_lr_multiplier

    def create_optimizer(self, model: Any = None):
        """AdamW with a larger learning rate for the freshly initialised head."""
        if self.optimizer is None:
            lr, wd = self.args.learning_rate, self.args.weight_decay
            self.optimizer = grouped_adamw(
                model or self.model,
                [
                    ("encoder", lambda n, _: not n.startswith("head."), lr, wd),
                    ("head", lambda n, _: True, lr * self.head_lr_multiplier, 0.0),
                ],
            )
        return self.optimizer

    def batch_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[Any, Any]:
        labels = inputs.pop("labels")
        out = model(**inputs)
        return self.loss_fn(out["logits"], labels, self.state.global_step), out

    def phase(self, step: int) -> str:
        """The active loss phase (focal, then bootstrap)."""
        return self.loss_fn.phase(step)
