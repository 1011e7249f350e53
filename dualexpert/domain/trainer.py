"""Training plumbing on the transformers ``Trainer``: progress, checkpoints, resume, seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..phased_trainer import PhasedTrainer
from ..training import grouped_adamw
from .losses import TeacherLoss, TwoPhaseLoss


class TextLabelDataset(Dataset):
    """Texts and labels, and optionally a teacher's sparse distribution per row (``teacher``:
    the indices of its top classes and their probabilities, two arrays of shape ``(n, k)``)."""

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        teacher: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        if teacher is not None and not len(teacher[0]) == len(teacher[1]) == len(texts):
            raise ValueError("the teacher's targets and the texts differ in length")
        self.texts, self.labels, self.teacher = list(texts), list(labels), teacher

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"text": self.texts[i], "label": self.labels[i]}
        if self.teacher is not None:
            item["teacher_idx"], item["teacher_p"] = self.teacher[0][i], self.teacher[1][i]
        return item


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
        if "teacher_idx" in batch[0]:
            enc["teacher_idx"] = torch.as_tensor(np.stack([b["teacher_idx"] for b in batch]))
            enc["teacher_p"] = torch.as_tensor(np.stack([b["teacher_p"] for b in batch]))
        return dict(enc)


class TwoPhaseTrainer(PhasedTrainer):
    """``Trainer`` whose loss is a :class:`TwoPhaseLoss` driven by the global step (or a
    :class:`TeacherLoss` around one, when the batches carry a teacher's targets)."""

    def __init__(
        self,
        *args: Any,
        loss_fn: TwoPhaseLoss | TeacherLoss,
        head_lr_multiplier: float = 1.0,
        **kwargs: Any,
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
        soft = {k: inputs.pop(k) for k in ("teacher_idx", "teacher_p") if k in inputs}
        out = model(**inputs)
        return self.loss_fn(out["logits"], labels, self.state.global_step, **soft), out

    def phase(self, step: int) -> str:
        """The active loss phase (focal, then bootstrap)."""
        return self.loss_fn.phase(step)
