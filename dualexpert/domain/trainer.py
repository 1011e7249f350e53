"""Training plumbing on the transformers ``Trainer``: progress, checkpoints, resume, seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import Trainer

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


class TwoPhaseTrainer(Trainer):
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
            named = list((model or self.model).named_parameters())
            head = [p for n, p in named if n.startswith("head.") and p.requires_grad]
            rest = [p for n, p in named if not n.startswith("head.") and p.requires_grad]
            self.optimizer = torch.optim.AdamW(
                [
                    {"params": rest, "lr": lr, "weight_decay": wd},
                    {"params": head, "lr": lr * self.head_lr_multiplier, "weight_decay": 0.0},
                ],
                lr=lr,
            )
        return self.optimizer

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        labels = inputs.pop("labels")
        out = model(**inputs)
        loss = self.loss_fn(out["logits"], labels, self.state.global_step)
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Record the active loss phase with every log entry."""
        logs["phase"] = self.loss_fn.phase(self.state.global_step)
        super().log(logs, *args, **kwargs)
