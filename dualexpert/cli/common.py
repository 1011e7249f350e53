"""What every command group of the CLI shares: the console, progress bars, shared options, and
the one way an expected failure reaches the user (a line on stderr and an exit code)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

console = Console(stderr=True)

EXIT_BAD_INPUT = 2  # a file, record or option the user can fix
EXIT_BUDGET = 3  # an optimisation run would pass its LLM call budget
EXIT_LLM = 4  # the LLM could not be started or reached at all
EXIT_INTERRUPTED = 130  # Ctrl-C; what was written so far is kept, and a rerun resumes

# what a user can fix: one line naming the file (or record) and the fix, not a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # RecordError, bad JSON, bad config values, corrupt Parquet (ArrowInvalid)
    TypeError,  # unknown or wrongly typed estimator options
    OSError,  # missing files, a folder given as a file, permissions, a full disk
    ImportError,  # an optional extra that is not installed (the message names it)
    json.JSONDecodeError,
)
settings = {"verbose": False}  # set by the app's callback

ColumnsOpt = Annotated[
    str | None,
    typer.Option(help="Column preset (mwpd, bigbasket, default) or a JSON ColumnMap."),
]
SkipOpt = Annotated[bool, typer.Option(help="Skip bad records (counted) instead of stopping.")]
QuantizeOpt = Annotated[
    bool,
    typer.Option(help="int8 dynamic quantisation of the domain expert for CPU inference."),
]
LlmOpt = Annotated[
    str | None,
    typer.Option("--llm", help="qwen-1.5b (default), smollm2, a .gguf path or a LiteLLM model."),
]
ApiBaseOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")]
GeneralOpt = Annotated[
    str,
    typer.Option(
        help="The general expert: auto (the model's cross-encoder reranker when it has one, "
        "else the LLM), reranker, or llm (the paper's)."
    ),
]
FusionOpt = Annotated[
    str,
    typer.Option(
        help="How the general expert's answer counts: a weight w (each candidate scores "
        "log p_domain + w * its score from the general expert), or none (the LLM's pick as is, "
        "the paper). auto: 1 with the reranker, 0.25 with the bundled local LLM (its pick as is "
        "lost accuracy in every measurement), the pick as is with a hosted LLM.",
    ),
]
PriorOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=10.0,  # far beyond any useful value; huge ones overflowed into NaN probabilities
        help="tau of the prior adjustment to predict with, instead of the one the model was "
        "trained with (1 with synthetic products; lower keeps more head accuracy, 0: none).",
    ),
]
LlmTierOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="With the reranker: products whose reranked top probability is below this also "
        "go to the LLM (0: never).",
    ),
]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        help="Where the domain expert's encoder runs: auto (ONNX Runtime when the model has an "
        "export from `dualexpert export-onnx` and onnxruntime is installed, else torch), torch "
        "or onnx.",
    ),
]
StrategyOpt = Annotated[
    str,
    typer.Option(
        help="How the LLM chooses: auto (channel with the bundled local LLM, zero_shot with a "
        "hosted one), zero_shot, rank, cot_rank (the paper's prompts), score or channel (a "
        "local LLM's log-probabilities)."
    ),
]
RepresentationOpt = Annotated[
    str,
    typer.Option(
        help="How candidates are shown to the LLM: auto (examples for the channel strategy when "
        "the model keeps its products' titles, else descriptive; a reranker's own), leaf, "
        "path, descriptive, summary (needs --summaries) or examples (the descriptive name and "
        "the category's training products nearest to the product)."
    ),
]
KOpt = Annotated[int, typer.Option(min=1, help="Candidate leaves (top-K) per product.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Products per batch.")]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.01,  # a probability: 90 (meant as a percentage) would route every product
        help="Products whose top probability is below this go to the general expert (0: none; "
        "1.01: every one, a top-1 can round to exactly 1). Default: 0.8 with the channel "
        "strategy (auto with the bundled LLM), else 0.9.",
        show_default=False,
    ),
]
LimitOpt = Annotated[int | None, typer.Option(min=0, help="Only the first N products.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="CPU threads. Default: what this process may use (the smallest of its CPU "
        "affinity, the cgroup CPU quota and OMP_NUM_THREADS). Two jobs on one machine: give "
        "each half.",
    ),
]


def fail(message: object, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one error line and leave with ``code``."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(str(message))}", highlight=False)
    raise typer.Exit(code)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose expected failures end in one ``error:`` line and a documented exit code
    (tracebacks stay for bugs, and for everything under ``--verbose``)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        from ..llm_process import LLMUnavailable

        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            console.print("interrupted: what was written so far is kept; rerun to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except LLMUnavailable as e:
            if settings["verbose"]:
                raise
            fail(e, EXIT_LLM)
        except USER_ERRORS as e:
            if settings["verbose"] or _is_click(e):
                raise
            fail(_one_line(e))

    return run


def _is_click(e: BaseException) -> bool:
    import click

    return isinstance(e, click.exceptions.ClickException | click.exceptions.Exit)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {text}"
    return " ".join(text.split())


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (a bad record, a missing file, a bad value) into one line
    and exit code 2 instead of a traceback."""
    from ..data import RecordError

    try:
        yield
    except (RecordError, FileNotFoundError, ValueError) as e:
        if settings["verbose"]:
            raise
        fail(_one_line(e))


def writable_report(path: Path | None, *inputs: Path | None) -> None:
    """Refuse, before any work, a report path that is a folder or one of the inputs."""
    if path is None:
        return
    if path.is_dir():
        fail(f"--json {path} is a folder; give a file name")
    for src in inputs:
        if src is not None and path.exists() and src.exists() and path.samefile(src):
            fail(f"--json {path} is an input of this command; give another file name")


def load_or_exit(path: Path, columns: str | None, skip_bad: bool):
    """:func:`dualexpert.data.load_catalogue`, with bad input reported as one line."""
    from ..data import load_catalogue

    with user_errors():
        cat = load_catalogue(path, columns, on_error="skip" if skip_bad else "raise")
    report_skipped(path, cat.skipped, cat.errors)
    return cat


def report_skipped(path: Path, skipped: int, errors: list) -> None:
    if skipped:
        console.print(f"[yellow]skipped {skipped} bad record(s) in {path}[/yellow]")
        for e in errors[:5]:
            console.print(f"  {e}", markup=False, highlight=False)


def progress_bar(stats_fields: bool = False) -> Progress:
    """A Rich progress bar on stderr; ``stats_fields`` adds a free-text ``stats`` column."""
    cols: list = [
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    if stats_fields:  # products/s, routed share, LLM calls, tokens, cost
        cols.append("{task.fields[stats]}")
    return Progress(*cols, console=console)


def runtime_for(runtime: str, quantize: bool) -> str:
    """The runtime to load with: ``--quantize`` is int8 on torch, so it picks torch under
    ``auto`` and is refused with ``onnx`` (the export runs in float32)."""
    if runtime not in ("auto", "torch", "onnx"):
        fail(f"--runtime must be auto, torch or onnx, not {runtime!r}")
    if quantize and runtime == "onnx":
        fail("--quantize is int8 on torch; --runtime onnx runs the float32 export: drop one")
    return "torch" if quantize else runtime
