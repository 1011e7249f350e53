"""Training plumbing for distillation on the transformers ``Trainer``.

Progress, checkpoints (safetensors), resume and seeds come from the Trainer; this module adds the
pair/rationale collator, the per-group warm-up schedule and the combined loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..phased_trainer import PhasedTrainer
from ..training import grouped_adamw
from .schedule import WarmupSchedule


class PairDataset(Dataset):
    """Rows of ``{"query", "title", "label", "rationale"?, "embedding"?, "prior"?}``."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


class PairCollator:
    """Tokenises (query, title) for the encoder and the rationale for the decoder; with
    ``tags``, the rationale becomes one target per input token instead (:mod:`.tags`)."""

    def __init__(
        self,
        tokenizer: Any,
        max_length: int,
        rationale_tokenizer: Any = None,
        rationale_max_length: int = 64,
        tags: bool = False,
    ):
        self.tok, self.max_length = tokenizer, max_length
        self.rtok, self.rmax = rationale_tokenizer, rationale_max_length
        self.tags = tags

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        enc = self.tok(
            [b["query"] for b in batch],
            [b["title"] for b in batch],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
            return_offsets_mapping=self.tags,
        )
        out = dict(enc)
        out["labels"] = torch.tensor([float(b["label"]) for b in batch])
        if self.tags:
            from .tags import token_tags

            out.pop("offset_mapping")
            rationales = [b.get("rationale") for b in batch]
            if any(rationales):  # else nothing to learn from this batch
                tags = token_tags(enc, [(b["query"], b["title"]) for b in batch], rationales,
                                  [float(b["label"]) for b in batch])  # fmt: skip
                out["rationale_tags"] = torch.tensor(tags)
        if self.rtok is not None and any(b.get("rationale") for b in batch):
            r = self.rtok(
                [b.get("rationale") or "" for b in batch],
                truncation=True,
                max_length=self.rmax,
                padding=True,
                return_tensors="pt",
            )
            # a pair without a rationale (partial coverage) is masked out of the decoder loss
            have = torch.tensor([bool(b.get("rationale")) for b in batch]).unsqueeze(1)
            out["rationale_ids"] = r["input_ids"]
            out["rationale_mask"] = r["attention_mask"] * have
        if all(b.get("prior") is not None for b in batch):
            out["prior_logit"] = torch.tensor([float(b["prior"]) for b in batch])
        if all(b.get("embedding") is not None for b in batch):
            out["rationale_embedding"] = torch.tensor([b["embedding"] for b in batch])
        return out


class DistillTrainer(PhasedTrainer):
    """``Trainer`` with the decoder warm-up (frozen encoder, aux loss only, then a linear encoder
    warm-up) and separate weight decay for the encoder and the auxiliary head."""

    def __init__(
        self,
        *args: Any,
        schedule_fractions: tuple[float, float, float] = (0.0, 0.0, 0.1),
        decoder_weight_decay: float = 0.001,
        head_lr_multiplier: float = 1.0,
        aux_lr: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.aux_lr = aux_lr
        self.fractions = schedule_fractions
        self.decoder_weight_decay = decoder_weight_decay
        self.head_lr_multiplier = head_lr_multiplier
        self.schedule: WarmupSchedule | None = None
        self._parts: dict[str, float] = {}  # summed loss parts since the last log
        self._part_batches = 0

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """AdamW over three groups: encoder, classification head, auxiliary head (decoder)."""
        if self.optimizer is None:
            model = model or self.model
            enc_ids = {id(p) for p in model.encoder_parameters()}
            lr, mult = self.args.learning_rate, self.head_lr_multiplier
            self.optimizer = grouped_adamw(
                model,
                [
                    ("encoder", lambda _, p: id(p) in enc_ids, lr, self.args.weight_decay),
                    ("head", lambda n, _: n.startswith("cross."), lr * mult, 0.0),
                    ("aux", lambda n, _: True, self.aux_lr or lr, self.decoder_weight_decay),
                ],
                eps=1e-8,
                betas=(0.9, 0.999),
            )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        """Per-group multipliers from :class:`WarmupSchedule` (frozen, then warmed-up encoder)."""
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            frozen, enc_warm, head_warm = self.fractions
            self.schedule = WarmupSchedule(
                total_steps=num_training_steps,
                frozen_steps=int(round(frozen * num_training_steps)),
                encoder_warmup_steps=int(round(enc_warm * num_training_steps)),
                head_warmup_steps=int(round(head_warm * num_training_steps)),
            )
            fns = {
                "encoder": self.schedule.encoder,
                "head": self.schedule.head,
                "aux": self.schedule.head,
            }
            lambdas = [fns[g.get("kind", "head")] for g in optimizer.param_groups]
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return self.lr_scheduler

    def batch_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[Any, Any]:
        aux_only = self.schedule is not None and self.schedule.aux_only(self.state.global_step)
        out = model(**inputs, aux_only=aux_only)
        if model.training:
            for key in ("loss_cls", "loss_aux"):
                self._parts[key] = self._parts.get(key, 0.0) + float(out[key])
            self._part_batches += 1
        return out["loss"], out

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's log, with the mean of each loss part (L_cls, L_aux unweighted) over
        the batches since the last training log."""
        if "loss" in logs and self._part_batches:
            for key, total in self._parts.items():
                logs[key] = round(total / self._part_batches, 4)
            self._parts, self._part_batches = {}, 0
        super().log(logs, *args, **kwargs)

    def phase(self, step: int) -> str | None:
        if self.schedule is None:
            return None
        return "decoder-warmup" if self.schedule.aux_only(step) else "joint"

    # Checkpoints as safetensors; save_model keeps tied weights (the decoder's LM head) intact.
    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        from safetensors.torch import save_model

        out = Path(output_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(out / "model.safetensors"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from safetensors.torch import load_model

        load_model(model or self.model, str(Path(resume_from_checkpoint) / "model.safetensors"))
