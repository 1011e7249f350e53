"""What both bundled trainers share: CPU-friendly ``TrainingArguments`` and checkpoint lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def training_args(
    output_dir: str | Path,
    *,
    batch_size: int,
    epochs: float,
    learning_rate: float,
    weight_decay: float,
    seed: int,
    save_steps: int,
    logging_steps: int,
    progress: bool,
    save_total_limit: int = 2,
    **extra: Any,
):
    """``TrainingArguments`` with fixed seeds (model and data order), step checkpoints for
    resume, no external reporting, and the CPU used when no GPU is there."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        logging_steps=logging_steps,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        **extra,
    )


def last_checkpoint(folder: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder of a training run, or None."""
    d = Path(folder)
    if not d.is_dir():
        return None
    cks = [p for p in d.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return str(max(cks, key=lambda p: int(p.name.split("-")[-1]))) if cks else None
