"""Relevance commands of the ``dualexpert`` CLI: ``rationales``, ``distill``, ``relevance``.

Registered on the main app by :mod:`dualexpert.cli`; like it, they only parse arguments and call
the Python API in :mod:`dualexpert.relevance`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

relevance_app = typer.Typer(no_args_is_help=True, help="Query–product relevance scoring.")

SplitOpt = Annotated[
    str,
    typer.Option(help="Which side of the split-by-query to use: train, test or all."),
]
TestFracOpt = Annotated[float, typer.Option(help="Share of queries held out as the test side.")]
ThresholdOpt = Annotated[float, typer.Option(help="Label = relevance >= this.")]


def _pairs(path: Path, split: str, test_fraction: float, seed: int, sample: int | None, thr: float):
    from .cli import console
    from .data import RecordError
    from .relevance.data import load_pairs, sample_pairs, split_by_query

    try:
        pairs = load_pairs(path, threshold=thr)
    except (RecordError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if split != "all":
        if split not in ("train", "test"):
            console.print(f"[red]error:[/red] --split must be train, test or all, not {split!r}")
            raise typer.Exit(2)
        train, test = split_by_query(pairs, test_fraction, seed=0)
        pairs = train if split == "train" else test
    return sample_pairs(pairs, sample, seed) if sample else pairs


def rationales(
    pairs: Annotated[Path, typer.Argument(help="Labelled pairs (CSV/JSONL/Parquet).")],
    out: Annotated[Path, typer.Option(help="Rationale JSONL; a rerun resumes it.")],
    llm: Annotated[str | None, typer.Option(help="qwen-1.5b, smollm2, a .gguf or LiteLLM.")] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    split: SplitOpt = "train",
    test_fraction: TestFracOpt = 0.2,
    sample: Annotated[int | None, typer.Option(help="A fixed random sample of N pairs.")] = None,
    seed: Annotated[int, typer.Option(help="Sample seed.")] = 0,
    threshold: ThresholdOpt = 2.5,
) -> None:
    """Write an LLM rationale for each labelled pair (paper 4.3), resumable."""
    from .cli import _configure_lm, _progress, console
    from .relevance.rationales import write_rationales

    todo = _pairs(pairs, split, test_fraction, seed, sample, threshold)
    _configure_lm(llm, api_base)
    with _progress() as bar:
        task = bar.add_task("rationales", total=len(todo))
        totals = write_rationales(todo, out, progress=lambda n: bar.advance(task, n))
    console.print(json.dumps(totals))
