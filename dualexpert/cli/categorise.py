"""The ``dualexpert`` command. It parses arguments and calls the Python API, nothing more."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from .cli_options import ThreadsOpt
from .threads import apply_threads

app = typer.Typer(no_args_is_help=True, help="Dual-expert product categorisation.")
console = Console(stderr=True)

ColumnsOpt = Annotated[
    str | None,
    typer.Option(help="Column preset (mwpd, bigbasket, default) or a JSON ColumnMap."),
]
SkipOpt = Annotated[bool, typer.Option(help="Skip bad records (counted) instead of stopping.")]
QuantizeOpt = Annotated[
    bool,
    typer.Option(help="int8 dynamic quantisation of the domain expert for CPU inference."),
]


def _columns(value: str | None):
    from .data import ColumnMap

    if value is None:
        return None
    if value.strip().startswith("{"):
        return ColumnMap.model_validate_json(value)
    return value


def _load(path: Path, columns: str | None, skip_bad: bool):
    from .data import RecordError, load_catalogue

    try:
        cat = load_catalogue(path, _columns(columns), on_error="skip" if skip_bad else "raise")
    except (RecordError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if cat.skipped:
        console.print(f"[yellow]skipped {cat.skipped} bad record(s) in {path}[/yellow]")
        for e in cat.errors[:5]:
            console.print(f"  {e}")
    return cat


@app.command()
def train(
    train_file: Annotated[Path, typer.Argument(help="Labelled catalogue (csv, jsonl, parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained model.")],
    encoder: str = "minilm",
    epochs: float = 4.0,
    batch_size: int = 32,
    max_length: int = 32,
    learning_rate: float = 1e-4,
    seed: int = 42,
    label_augmentation: bool = True,
    focal: bool = True,
    bootstrap: bool = True,
    gamma: float = 2.0,
    beta: float = 0.9,
    gate: float = 0.6,
    taxonomy: Annotated[
        Path | None, typer.Option(help="Taxonomy file for the label space.")
    ] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Fine-tune the domain expert. Re-running with the same --out resumes from checkpoints."""
    apply_threads(threads)
    from .domain import DomainExpert
    from .taxonomy import Taxonomy

    cat = _load(train_file, columns, skip_bad)
    expert = DomainExpert(
        encoder=encoder,
        epochs=epochs,
        batch_size=batch_size,
        max_length=max_length,
        learning_rate=learning_rate,
        seed=seed,
        label_augmentation=label_augmentation,
        focal=focal,
        bootstrap=bootstrap,
        gamma=gamma,
        beta=beta,
        gate=gate,
    )
    tax = Taxonomy.load(taxonomy) if taxonomy else None
    expert.fit(cat.products, taxonomy=tax, output_dir=out / "checkpoints")
    expert.save(out)
    console.print(f"saved the domain expert to {out}")


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    input_file: Annotated[Path, typer.Argument(help="Catalogue to categorise.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output (appended, resumable).")],
    k: int = 10,
    batch_size: int = 256,
    quantize: QuantizeOpt = False,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Write the top-K categories of each product to a JSONL file.

    Products already in the output (by id) are skipped, so an interrupted run resumes.
    """
    apply_threads(threads)
    from .batch import predict_products
    from .data import ReadStats, RecordError, count_records, iter_catalogue
    from .domain import DomainExpert

    expert = DomainExpert.load(model)
    expert.config.quantize = quantize
    stats = ReadStats()
    try:
        prods = iter_catalogue(
            input_file, _columns(columns), on_error="skip" if skip_bad else "raise", stats=stats
        )
        with _progress() as prog:
            task = prog.add_task("predict", total=count_records(input_file))
            totals = predict_products(
                expert,
                prods,
                out,
                k=k,
                chunk_size=batch_size,
                progress=lambda n: prog.advance(task, n),
            )
    except (RecordError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if stats.skipped:
        console.print(f"[yellow]skipped {stats.skipped} bad record(s) in {input_file}[/yellow]")
    console.print(
        f"wrote {totals['products']} new prediction(s) to {out} "
        f"({totals['already_done']} already there)"
    )


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    test_file: Annotated[Path, typer.Argument(help="Labelled catalogue.")],
    k: int = 10,
    train_file: Annotated[
        Path | None, typer.Option(help="Training catalogue, for the head/tail split.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="Evaluate the dual expert with this prompt strategy "
            "(zero_shot, rank, cot_rank) instead of the domain expert alone."
        ),
    ] = None,
    representation: str = "descriptive",
    threshold: float = 0.9,
    summaries: Annotated[Path | None, typer.Option(help="Summary index folder.")] = None,
    fusion_weight: float | None = None,
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    limit: Annotated[int | None, typer.Option(help="Score a random sample of this size.")] = None,
    seed: int = 0,
    run_file: Annotated[
        Path | None, typer.Option(help="JSONL of the dual run (resumable).")
    ] = None,
    quantize: QuantizeOpt = False,
    batch_size: Annotated[
        int | None, typer.Option(help="Inference batch size (default: the model's).")
    ] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Per-level accuracy, P/R/F1 (weighted, macro), top-K recall and head/tail scores; with
    --strategy, the dual expert against the domain expert alone on the same products."""
    from .domain import DomainExpert
    from .evaluation import evaluate_domain_expert

    if strategy is not None:
        opts = dict(locals())
        _evaluate_dual(**{k: opts[k] for k in _DUAL_OPTS})
        return
    expert = DomainExpert.load(model)
    expert.config.quantize = quantize
    if batch_size is not None:
        expert.config.eval_batch_size = batch_size
    cat = _load(test_file, columns, skip_bad)
    counts = None
    if train_file:
        counts = Counter(_load(train_file, columns, skip_bad).paths)
    report = evaluate_domain_expert(expert, cat.products, counts, k=k)
    _print_report(report)
    if json_out:
        json_out.write_text(json.dumps(report, indent=1))


@app.command()
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
        str, typer.Option(help="score (fast, fused), zero_shot, rank or cot_rank.")
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
        str, typer.Option(help="auto (chosen on dev), none (the LLM's pick) or a number.")
    ] = "auto",
    llm_threads: Annotated[int | None, typer.Option(help="llama.cpp threads.")] = None,
) -> None:
    """End to end on the shipped demo catalogue with the embedded defaults: TF-IDF, the domain
    expert, and the dual expert with the local LLM; a comparison table and a threshold plot."""
    from .demo import demo_table, run_demo

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


LlmOpt = Annotated[
    str | None,
    typer.Option("--llm", help="qwen-1.5b (default), smollm2, a .gguf path or a LiteLLM model."),
]
ApiBaseOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")]


def _configure_lm(
    llm: str | None,
    api_base: str | None,
    max_tokens: int | None = None,
    timeout: float | None = None,
) -> None:
    import dspy

    from .lm import get_lm

    kw: dict = {"max_tokens": max_tokens} if max_tokens else {}
    if timeout is not None:
        kw["timeout"] = timeout
    dspy.configure(lm=get_lm(llm, api_base=api_base, **kw), track_usage=True)


def _pipeline(
    model: Path,
    strategy: str,
    representation: str,
    k: int,
    threshold: float,
    summaries: Path | None,
    fusion_weight: float | None,
    program: Path | None,
):
    from .domain import DomainExpert
    from .general import GeneralExpert
    from .indexes import SummaryIndex
    from .pipeline import DualExpert

    index = SummaryIndex.load(summaries) if summaries else None
    de = DualExpert(
        DomainExpert.load(model),
        GeneralExpert(strategy),
        k=k,
        threshold=threshold,
        representation=representation,
        summaries=index,
        fusion_weight=fusion_weight,
    )
    if program:
        from .optimizers import load_program

        # the strategy the program was compiled for is stored in its JSON
        de.general = load_program(program, strategy=None)
    return de


@app.command()
def summarize(
    model: Annotated[Path, typer.Argument(help="A saved domain expert (for its taxonomy).")],
    train_file: Annotated[Path, typer.Argument(help="Labelled catalogue to sample from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Summary index folder.")],
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    n_examples: int = 8,
    max_tokens: Annotated[int, typer.Option(help="Cap on the LLM's tokens per summary.")] = 256,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Write a summary of every leaf category with the LLM and index them in FAISS (resumable)."""
    from .domain import DomainExpert
    from .indexes import SummaryIndex

    _configure_lm(llm, api_base, max_tokens)
    tax = DomainExpert.load(model).taxonomy
    cat = _load(train_file, columns, skip_bad)
    out.mkdir(parents=True, exist_ok=True)
    with _progress() as prog:
        task = prog.add_task("summarize", total=len(tax.leaves))
        index = SummaryIndex().build(
            tax,
            cat.products,
            n_examples=n_examples,
            journal=out / "journal.jsonl",
            progress=lambda i, n: prog.update(task, completed=i),
        )
    index.save(out)
    console.print(f"indexed {len(index)} summaries in {out}")


@app.command()
def index(
    folder: Annotated[Path, typer.Argument(help="Summary index folder.")],
    search: Annotated[
        str | None, typer.Option(help="Show the summaries nearest this text.")
    ] = None,
    update: Annotated[str | None, typer.Option(help="Category id to (re)write.")] = None,
    summary: Annotated[str | None, typer.Option(help="New summary text for --update.")] = None,
    k: int = 5,
) -> None:
    """Search a summary index, or update one category's summary."""
    from .indexes import SummaryIndex

    ix = SummaryIndex.load(folder)
    if update:
        if not summary:
            console.print("[red]error:[/red] --update needs --summary")
            raise typer.Exit(2)
        ix.update(update, summary)
        ix.save(folder)
        console.print(f"updated {update!r}")
    if search:
        for cid, score, text in ix.search(search, k=k):
            Console().print(f"{score:.3f}  {cid}\n       {text}", markup=False)
    if not (update or search):
        console.print(f"{len(ix)} summaries, embedder {ix.embedder}, built {ix.built_at}")


@app.command()
def classify(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    input_file: Annotated[Path, typer.Argument(help="Catalogue to categorise.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output (appended, resumable).")],
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    strategy: str = "zero_shot",
    representation: str = "descriptive",
    k: int = 5,
    threshold: float = 0.9,
    summaries: Annotated[Path | None, typer.Option(help="Summary index folder.")] = None,
    fusion_weight: float | None = None,
    program: Annotated[Path | None, typer.Option(help="Compiled general expert JSON.")] = None,
    limit: int | None = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
    threads: ThreadsOpt = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="LLM requests in flight at once (hosted LLMs).")
    ] = 4,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Products per batched domain-expert pass.")
    ] = 64,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds one LLM request may take (then: fallback).")
    ] = None,
) -> None:
    """Categorise a file with both experts; uncertain products go to the LLM.

    The catalogue is streamed in chunks; records are written in input order as each chunk
    finishes, and a rerun on the same --out resumes by id.
    """
    apply_threads(threads)
    from itertools import islice

    from .batch import classify_products
    from .data import ReadStats, RecordError, count_records, iter_catalogue

    _configure_lm(llm, api_base, timeout=timeout)
    de = _pipeline(model, strategy, representation, k, threshold, summaries, fusion_weight, program)
    stats = ReadStats()
    try:
        total = count_records(input_file)
        prods = iter_catalogue(
            input_file, _columns(columns), on_error="skip" if skip_bad else "raise", stats=stats
        )
        if limit is not None:
            prods = islice(prods, limit)
            total = min(total, limit) if total is not None else limit
        with _progress(stats_fields=True) as prog:
            task = prog.add_task("classify", total=total, stats="")

            def tick(n: int, t: dict) -> None:
                done = t["products"] or 1
                cost = f" ${t['cost']:.4f}" if t["cost"] else ""
                prog.update(
                    task,
                    advance=n,
                    stats=f"{t['products'] / max(t['seconds'], 1e-9):.1f}/s "
                    f"routed {t['routed'] / done:.0%} LLM {t['llm_calls']} calls "
                    f"{t['prompt_tokens'] + t['completion_tokens']} tok{cost}",
                )

            totals = classify_products(
                de, prods, out, progress=tick, chunk_size=chunk_size, concurrency=concurrency
            )
    except (RecordError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    totals["bad_records_skipped"] = stats.skipped
    if stats.skipped:
        console.print(f"[yellow]skipped {stats.skipped} bad record(s) in {input_file}[/yellow]")
        for e in stats.errors[:5]:
            console.print(f"  {e}")
    typer.echo(json.dumps(totals))  # one machine-readable line on stdout, never wrapped


@app.command()
def optimize(
    model: Annotated[Path, typer.Option(help="A saved domain expert folder (kept fixed).")],
    train: Annotated[Path, typer.Option(help="Labelled catalogue the optimiser learns from.")],
    dev: Annotated[Path, typer.Option(help="Labelled catalogue for before/after scores.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Compiled program (DSPy JSON).")],
    optimizer: Annotated[
        str, typer.Option(help="bootstrap, random_search, mipro, gepa or simba.")
    ] = "bootstrap",
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    strategy: str = "zero_shot",
    representation: str = "descriptive",
    k: int = 5,
    summaries: Annotated[Path | None, typer.Option(help="Summary index folder.")] = None,
    metric: Annotated[str, typer.Option(help="exact, hierarchical or mrr.")] = "exact",
    max_calls: Annotated[int, typer.Option(help="Cap on LLM calls for the whole run.")] = 300,
    limit_train: Annotated[
        int | None, typer.Option(help="Sample this many train products.")
    ] = None,
    limit_dev: Annotated[int | None, typer.Option(help="Sample this many dev products.")] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(help="Optimiser setting NAME=VALUE (repeatable), e.g. max_steps=3."),
    ] = None,
    seed: int = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Optimise the general expert's prompt with a DSPy optimiser (the domain expert is fixed),
    print before/after scores on the dev file, and save the program for classify --program."""
    import dspy

    from .domain import DomainExpert
    from .indexes import SummaryIndex
    from .lm import get_lm
    from .optimizers import BudgetExceeded, build_examples
    from .optimizers import optimize as run_optimize

    settings = {}
    for item in setting or []:
        name, _, value = item.partition("=")
        try:
            settings[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[name.strip()] = value
    expert = DomainExpert.load(model)
    index = SummaryIndex.load(summaries) if summaries else None
    tr = _sample(_load(train, columns, skip_bad).products, limit_train, seed)
    dv = _sample(_load(dev, columns, skip_bad).products, limit_dev, seed + 1)
    train_ids = {p.id for p in tr}
    dv = [p for p in dv if not p.id or p.id not in train_ids]
    opts = dict(k=k, representation=representation, summaries=index)
    trainset, devset = build_examples(expert, tr, **opts), build_examples(expert, dv, **opts)
    lm = get_lm(llm, api_base=api_base)
    dspy.configure(lm=lm)
    with _progress() as prog:
        task = prog.add_task(f"{optimizer} (LLM calls)", total=None)

        def progress(calls: int, projected: int) -> None:
            prog.update(task, completed=calls, total=max(projected, calls))

        try:
            result = run_optimize(
                trainset,
                devset,
                optimizer,
                lm=lm,
                strategy=strategy,
                metric=metric,
                max_calls=max_calls,
                settings=settings,
                seed=seed,
                out=out,
                progress=progress,
                log=prog.console.print,
            )
        except BudgetExceeded as e:
            console.print(f"[red]budget:[/red] {e}")
            raise typer.Exit(3) from None
    table = Table(title=f"{optimizer} on {result.n_dev} dev products ({result.calls} LLM calls)")
    for c in ("system", "exact", "hierarchical", "mrr"):
        table.add_column(c)
    for name, s in (
        ("domain expert", result.domain),
        ("before", result.before),
        ("after", result.after),
    ):
        table.add_row(name, *(f"{s[m]:.4f}" for m in ("exact", "hierarchical", "mrr")))
    Console().print(table)
    console.print(f"saved the compiled program to {result.path}")
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=1))


def _sample(products: list, limit: int | None, seed: int) -> list:
    import random

    labelled = [p for p in products if p.category is not None]
    if limit is None or limit >= len(labelled):
        return labelled
    return random.Random(seed).sample(labelled, limit)


def _run_dual(de, prods, run_file: Path) -> list[dict]:
    from .batch import classify_products
    from .dual_eval import read_records

    with _progress() as prog:
        task = prog.add_task("classify", total=len(prods))
        classify_products(de, prods, run_file, progress=lambda n: prog.advance(task, n))
    wanted = {p.id for p in prods}
    return [r for r in read_records(run_file) if r["id"] in wanted]


def _default_run_file(kind: str, strategy: str, representation: str, **config) -> Path:
    """``runs/<kind>-<strategy>-<representation>-<hash>.jsonl``, the hash over the model (its
    path and weights' mtime), the data and the settings: a rerun resumes its own records and
    never reuses those of another model, LLM or configuration."""
    import hashlib

    model = Path(config.pop("model"))
    weights = model / "model.safetensors"
    config["model"] = str(model.resolve())
    config["model_mtime"] = weights.stat().st_mtime if weights.exists() else None
    config["data"] = str(Path(config["data"]).resolve())
    key = json.dumps({k: str(v) for k, v in config.items()}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path("runs") / f"{kind}-{strategy}-{representation}-{digest}.jsonl"


_DUAL_OPTS = (
    "model",
    "test_file",
    "strategy",
    "representation",
    "k",
    "threshold",
    "summaries",
    "fusion_weight",
    "llm",
    "api_base",
    "limit",
    "seed",
    "run_file",
    "json_out",
    "columns",
    "skip_bad",
)


def _evaluate_dual(
    *,
    model: Path,
    test_file: Path,
    strategy: str,
    representation: str,
    k: int,
    threshold: float,
    summaries: Path | None,
    fusion_weight: float | None,
    llm: str | None,
    api_base: str | None,
    limit: int | None,
    seed: int,
    run_file: Path | None,
    json_out: Path | None,
    columns: str | None,
    skip_bad: bool,
) -> None:
    from .dual_eval import summarise_records

    _configure_lm(llm, api_base)
    de = _pipeline(model, strategy, representation, k, threshold, summaries, fusion_weight, None)
    prods = _sample(_load(test_file, columns, skip_bad).products, limit, seed)
    run_file = run_file or _default_run_file(
        "eval", strategy, representation, model=model, data=test_file, k=k, threshold=threshold,
        summaries=summaries, fusion_weight=fusion_weight, llm=llm, api_base=api_base,
    )  # fmt: skip
    summary = summarise_records(_run_dual(de, prods, run_file))
    summary["config"] = {
        "strategy": strategy,
        "representation": representation,
        "k": k,
        "threshold": threshold,
        "fusion_weight": fusion_weight,
        "llm": llm,
        "limit": limit,
        "seed": seed,
    }
    table = Table(title=f"dual expert ({strategy}, {representation}) on {summary['n']} products")
    for c in ("system", "accuracy", "f1_weighted", "f1_macro"):
        table.add_column(c)
    for name in ("domain", "dual"):
        s = summary[name]
        table.add_row(
            name, f"{s['accuracy']:.4f}", f"{s['f1_weighted']:.4f}", f"{s['f1_macro']:.4f}"
        )
    Console().print(table)
    Console().print(
        f"routed {summary['routed']} ({summary['routed_share']:.1%}); on routed: dual "
        f"{summary['routed_dual_accuracy']:.3f} vs domain {summary['routed_domain_accuracy']:.3f}; "
        f"fixed {summary['fixed']}, broken {summary['broken']}; "
        f"{summary['llm_calls_per_product']:.2f} LLM calls and "
        f"{summary['seconds_per_product']:.2f} s per product"
    )
    if json_out:
        json_out.write_text(json.dumps(summary, indent=1))


@app.command()
def threshold(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    dev_file: Annotated[Path, typer.Argument(help="Labelled dev catalogue.")],
    plot: Annotated[Path, typer.Option(help="PNG of accuracy and traffic.")] = Path(
        "runs/threshold.png"
    ),
    strategy: str = "zero_shot",
    representation: str = "descriptive",
    k: int = 5,
    summaries: Annotated[Path | None, typer.Option(help="Summary index folder.")] = None,
    max_traffic: Annotated[float, typer.Option(help="Cap on the share sent to the LLM.")] = 1.0,
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    limit: int | None = None,
    seed: int = 0,
    run_file: Annotated[Path | None, typer.Option(help="JSONL of the dev run (resumable).")] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Choose the routing threshold (and fusion weight) on a dev set and plot the trade-off."""
    from .routing import choose_fusion_weight, choose_threshold, plot_curve, threshold_curve

    _configure_lm(llm, api_base)
    de = _pipeline(model, strategy, representation, k, 1.01, summaries, None, None)
    prods = _sample(_load(dev_file, columns, skip_bad).products, limit, seed)
    run_file = run_file or _default_run_file(
        "threshold", strategy, representation, model=model, data=dev_file, k=k,
        summaries=summaries, llm=llm, api_base=api_base,
    )  # fmt: skip
    records = _run_dual(de, prods, run_file)
    weight, wscores = choose_fusion_weight(records)
    curve = threshold_curve(records, weight=weight)
    best = choose_threshold(curve, max_traffic)
    plot_curve(curve, plot)
    Console().print(f"fusion weight {weight} (routed accuracy by weight: {wscores})")
    Console().print(
        f"threshold {best['threshold']}: accuracy {best['accuracy']:.4f}, "
        f"LLM traffic {best['llm_traffic']:.1%}; plot in {plot}"
    )


def _print_report(report: dict) -> None:
    table = Table(title="domain expert")
    cols = ["accuracy", "f1_weighted", "f1_macro", "precision_macro", "recall_macro"]
    table.add_column("scope")
    for c in cols:
        table.add_column(c)
    for scope, s in report.items():
        if scope == "speed":
            continue
        table.add_row(scope, *(f"{s[c]:.4f}" for c in cols))
    Console().print(table)
    leaf = report.get("leaf", {})
    recalls = {k: v for k, v in leaf.items() if k.endswith("_recall") and k.startswith("top")}
    if recalls:
        Console().print("  ".join(f"{k}={v:.4f}" for k, v in recalls.items()))
    if "speed" in report:
        Console().print(f"{report['speed']['products_per_second']:.1f} products/s")


def _progress(stats_fields: bool = False) -> Progress:
    cols: list = [
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    if stats_fields:  # products/s, routed share, LLM calls, tokens, cost
        cols.append("{task.fields[stats]}")
    return Progress(*cols, console=console)


@app.command()
def doctor(
    quick: Annotated[
        bool, typer.Option(help="Check only the small LLM's files (what setup runs).")
    ] = False,
) -> None:
    """Check this machine: versions, the llama.cpp build against the CPU features the OS
    enables, model files and hashes, and a one-token decode in a child process."""
    from .doctor import run_checks

    checks = run_checks(quick=quick)
    for c in checks:
        mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {c.name}: {c.detail}", highlight=False, soft_wrap=True)
        if not c.ok and c.fix:
            console.print(f"      fix: {c.fix}", highlight=False, soft_wrap=True)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def _register_relevance() -> None:
    from .cli_relevance import distill, rationales, relevance_app

    app.command()(rationales)
    app.command()(distill)
    app.add_typer(relevance_app, name="relevance")


_register_relevance()

if __name__ == "__main__":
    app()
