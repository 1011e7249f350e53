"""What both bundled trainers share: CPU-friendly ``TrainingArguments``, checkpoint lookup and
an AdamW whose new head has its own learning rate."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def training_args(output_dir: str | Path, config: Any, progress: bool, **extra: Any):
    """``TrainingArguments`` from an estimator's config (its ``batch_size``, ``epochs``,
    ``learning_rate``, ``weight_decay``, ``seed``, ``save_steps``, ``logging_steps``): fixed
    seeds (model and data order), step checkpoints for resume, no external reporting, and the
    CPU used when no GPU is there. ``extra`` adds or overrides arguments."""
    import torch
    from transformers import TrainingArguments

    steps = config.save_steps
    args: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps",
        # None: checkpoints by time and at each epoch's end (TimedCheckpoints), not by steps
        save_steps=steps if steps else 10**9,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress or not is_main_process(),
    )
    if world_size() > 1 and not torch.cuda.is_available():
        args["ddp_backend"] = "gloo"  # torchrun on CPU; NCCL is the default on GPUs
    return TrainingArguments(**{**args, **extra})


def world_size() -> int:
    """Processes in this training run (``torchrun`` sets ``WORLD_SIZE``; 1 otherwise)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def is_main_process() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def torchrun(nproc: int, module: str, args: list[str]) -> int:
    """Run ``python -m module args`` as ``nproc`` DDP processes on this machine (``torchrun
    --standalone``), each with its share of the CPU threads; returns the exit code."""
    import subprocess
    import sys

    from .threads import available_cpus

    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, available_cpus() // nproc)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", module, *args]
    return subprocess.call(cmd, env=env)


#: below this many free bytes where the checkpoints go, a failed write is taken for a full disk
LOW_DISK_BYTES = 64 * 2**20


@contextmanager
def disk_full_as_oserror(folder: str | Path) -> Iterator[None]:
    """Re-raise a write that failed on a full disk as ``OSError(ENOSPC)`` naming ``folder``
    and the fix, whatever library wrote it: safetensors and ``torch.save`` raise their own
    error types, which the CLI would otherwise show as a traceback. A write error whose message
    names no cause (``torch.save``'s "file write failed") counts as one when the disk holding
    ``folder`` is nearly full. Other errors pass as they are."""
    import errno
    import shutil

    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, _disk_full_message(folder)) from e
    except Exception as e:
        text = str(e)
        try:
            low = shutil.disk_usage(folder).free < LOW_DISK_BYTES
        except OSError:
            low = False
        write = any(w in text.lower() for w in ("write", "serializ", "i/o"))
        if "No space left on device" in text or "os error 28" in text or (write and low):
            raise OSError(errno.ENOSPC, _disk_full_message(folder)) from e
        raise


def _disk_full_message(folder: str | Path) -> str:
    return (
        f"no space left on the device holding {folder} while training; free some space and run "
        "again (`train` with the same --out resumes by itself; `distill` with --resume; Python: "
        "resume=True): the run goes on from its last complete checkpoint, an incomplete one is "
        "skipped"
    )


def last_checkpoint(folder: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder of a training run, or None.

    A checkpoint is complete when its ``trainer_state.json`` (written last) reads as JSON; one
    cut short by a kill is skipped, so it never wedges a resume.
    """
    d = Path(folder)
    if not d.is_dir():
        return None
    cks = [p for p in d.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for ck in sorted(cks, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        try:
            json.loads((ck / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("skipping the incomplete checkpoint %s", ck)
            continue
        return str(ck)
    return None


def run_fingerprint(config: dict[str, Any], classes: Iterable[str], rows: Iterable[Any]) -> str:
    """A hash of what a training run learns from: its settings, label space and data."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(json.dumps(list(classes)).encode())
    for row in rows:
        h.update(json.dumps(row, default=str).encode())
    return h.hexdigest()


def resume_point(folder: str | Path, fingerprint: str, resume: bool) -> str | None:
    """The checkpoint to resume from in ``folder`` (None: start afresh).

    The folder records the fingerprint of the run that owns it (``run.json``). Checkpoints of
    another run (other data, labels or settings), or of one that left no record, are refused
    with a message instead of being resumed into the wrong model.
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    marker = d / "run.json"
    ckpt = last_checkpoint(d)
    if resume and ckpt is not None:
        try:
            owner = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            owner = None
        if owner != fingerprint:
            why = (
                "another training run (other data, labels or settings)"
                if owner
                else ("a run that left no record of its data and settings")
            )
            raise ValueError(
                f"{d} holds checkpoints of {why}; resuming them would train the wrong model. "
                f"Give another output folder, or delete {d} to start afresh."
            )
    if is_main_process():
        tmp = d / f".run.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
        os.replace(tmp, marker)
    return ckpt if resume else None


def grouped_adamw(
    model: Any,
    groups: list[tuple[str, Callable[[str, Any], bool], float, float]],
    **adamw: Any,
):
    """AdamW over parameter groups, so a freshly initialised head can learn faster than the
    pretrained encoder it sits on.

    Args:
        model: the module whose trainable parameters are grouped.
        groups: ``(kind, accepts(name, param), learning_rate, weight_decay)``; each parameter
            joins the first group that accepts it. Empty groups are dropped; ``kind`` is kept
            in the group (schedulers read it).
        adamw: further ``torch.optim.AdamW`` arguments.

    Returns:
        The optimiser.
    """
    import torch

    buckets: list[list[Any]] = [[] for _ in groups]
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        for i, (_, accepts, _, _) in enumerate(groups):
            if accepts(name, p):
                buckets[i].append(p)
                break
    params = [
        {"params": ps, "lr": lr, "weight_decay": wd, "kind": kind}
        for (kind, _, lr, wd), ps in zip(groups, buckets, strict=True)
        if ps
    ]
    return torch.optim.AdamW(params, lr=groups[0][2], **adamw)


@contextmanager
def transformers_verbosity(level: int | None = None) -> Iterator[None]:
    """Set transformers' log level (if given) for a block; the caller's level comes back after,
    also when the Trainer changed it."""
    from transformers import logging as hf_logging

    saved = hf_logging.get_verbosity()
    if level is not None:
        hf_logging.set_verbosity(level)
    try:
        yield
    finally:
        hf_logging.set_verbosity(saved)
