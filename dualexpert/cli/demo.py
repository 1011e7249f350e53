"""The end-to-end demo and the machine check (``demo``, ``doctor``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .common import console, user_errors


def demo(
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/demo"),
    epochs: float = 4.0,
    seed: int = 0,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="Domain expert and TF-IDF only (quick).")
    ] = False,
    llm: Annotated[
        str | None, typer.Option("--llm", help="qwen-1.5b (default), smollm2 or a .gguf path.")
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="score or channel (fast, fused), zero_shot, rank or cot_rank.")
    ] = "score",
    k: Annotated[int, typer.Option(help="Candidates shown to the LLM.")] = 5,
    dev_size: Annotated[
        int, typer.Option(help="Held-out products for choosing the threshold and weight.")
    ] = 16,
    llm_products: Annotated[
        int,
        typer.Option(
            help="Route the N least-confident test products when the dev threshold routes "
            "another number (0: keep the dev threshold)."
        ),
    ] = 12,
    fusion_weight: Annotated[
        str,
        typer.Option(
            help="dev (chosen on the dev products), auto (classify's rule for this LLM), "
            "none (the LLM's pick as is) or a number."
        ),
    ] = "dev",
    llm_threads: Annotated[int | None, typer.Option(help="llama.cpp threads.")] = None,
) -> None:
    """End to end on the shipped demo catalogue with the embedded defaults: TF-IDF, the domain
    expert, and the dual expert with the local LLM; a comparison table and a threshold plot."""
    from ..demo import demo_table, run_demo

    with user_errors():  # a bad option value: one line and exit 2
        result = run_demo(
            out,
            epochs=epochs,
            seed=seed,
            use_llm=not no_llm,
            llm=llm,
            strategy=strategy,
            k=k,
            dev_size=dev_size,
            llm_products=llm_products,
            fusion_weight=fusion_weight,
            llm_threads=llm_threads,
        )
    show = Console(width=max(Console().width, 110))  # the whole table, also when piped
    show.print(demo_table(result))
    for note in result["notes"]:
        show.print(f"note: {note}")
    if "plot" in result:
        show.print(f"plot: {result['plot']}")
    show.print(f"results: {out / 'demo.json'} ({result['total_seconds']:.0f} s)")


def doctor(
    quick: Annotated[
        bool, typer.Option(help="Check only the small LLM's files (what setup runs).")
    ] = False,
) -> None:
    """Check this machine: versions, the llama.cpp build against the CPU features the OS
    enables, model files and hashes, and a one-token decode in a child process."""
    from ..doctor import run_checks

    checks = run_checks(quick=quick)
    for c in checks:
        mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {c.name}: {c.detail}", highlight=False, soft_wrap=True)
        if not c.ok and c.fix:
            console.print(f"      fix: {c.fix}", highlight=False, soft_wrap=True)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
