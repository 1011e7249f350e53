"""Options shared by the CLI modules (defined once, imported by each command group)."""

from __future__ import annotations

from typing import Annotated

import typer

ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="CPU threads. Default: what this process may use (the smallest of its CPU "
        "affinity, the cgroup CPU quota and OMP_NUM_THREADS). Two jobs on one machine: give "
        "each half.",
    ),
]
