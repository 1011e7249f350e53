"""The ``dualexpert`` command. Each command parses its arguments, calls one function of the
Python API and prints; the command groups live in :mod:`.categorise`, :mod:`.relevance` and
:mod:`.demo`, what they share in :mod:`.common`.

Exit codes: 0 done; 1 ``doctor`` found a problem; 2 bad input (a file, record or option the
user can fix; one line on stderr says which and what to do); 3 an optimisation run would pass
its LLM budget; 4 the LLM could not be started or reached at all; 130 interrupted (Ctrl-C).
``--verbose`` shows the traceback of any failure.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

# Arrow's default allocator (mimalloc) keeps tens of MB of a streamed Parquet file's freed
# batches resident; the system one gives them back. Set before pyarrow loads; a user's own
# setting wins. (The library leaves the process-wide choice to its host application.)
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import typer

from . import categorise, demo, relevance
from .common import console, guarded, settings

app = typer.Typer(no_args_is_help=True, help="Dual-expert product categorisation.")


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log the library's debug messages.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log errors only.")] = False,
) -> None:
    """Dual-expert product categorisation and rationale-guided relevance distillation."""
    from rich.logging import RichHandler

    settings["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logger = logging.getLogger("dualexpert")
    saved = (logger.level, logger.propagate)
    handler = RichHandler(console=console, show_time=False, show_path=verbose)
    logger.setLevel(level)
    logger.addHandler(handler)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    ctx.call_on_close(restore)


for command in (
    categorise.train,
    categorise.synthesize,
    categorise.predict,
    categorise.evaluate,
    categorise.export_onnx,
    demo.demo,
    categorise.summarize,
    categorise.index,
    categorise.classify,
    categorise.optimize,
    categorise.threshold,
    demo.doctor,
    relevance.rationales,
    relevance.distill,
):
    app.command()(guarded(command))
for command in list(relevance.relevance_app.registered_commands):
    command.callback = guarded(command.callback)
app.add_typer(relevance.relevance_app, name="relevance")

__all__ = ["app"]
