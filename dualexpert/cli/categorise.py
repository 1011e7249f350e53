"""Categorisation commands: train, synthesize, predict, evaluate, summarize, index, classify,
optimize, threshold. Each parses its arguments, calls one library function, and prints."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..threads import apply_threads
from .common import (
    EXIT_BUDGET,
    EXIT_LLM,
    ApiBaseOpt,
    BatchOpt,
    ColumnsOpt,
    FusionOpt,
    GeneralOpt,
    KOpt,
    LimitOpt,
    LlmOpt,
    LlmTierOpt,
    PriorOpt,
    QuantizeOpt,
    RepresentationOpt,
    RuntimeOpt,
    SkipOpt,
    StrategyOpt,
    ThreadsOpt,
    ThresholdOpt,
    console,
    fail,
    load_or_exit,
    progress_bar,
    report_skipped,
    runtime_for,
    user_errors,
    writable_report,
)

# Candidates the general expert sees (classify, threshold, evaluate --strategy), and the top-K of
# the domain expert's own report (evaluate without --strategy).
DUAL_K = 5
REPORT_K = 10


def train(
    train_file: Annotated[Path, typer.Argument(help="Labelled catalogue (csv, jsonl, parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained model.")],
    encoder: str = "minilm",
    epochs: float = 4.0,
    batch_size: BatchOpt = 32,
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
    internal_nodes: Annotated[
        str,
        typer.Option(
            help="Products filed at an internal category: class (it becomes a class too) or "
            "reject (every label must be a leaf)."
        ),
    ] = "class",
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
    threads: ThreadsOpt = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1, help="Training processes (DDP through torchrun: gloo on CPU, NCCL on GPU)."
        ),
    ] = 1,
    synthetic: Annotated[
        Path | None,
        typer.Option(help="LLM-written products for rare leaves (from `synthesize`), added."),
    ] = None,
    synthesize: Annotated[
        bool | None,
        typer.Option(
            "--synthesize/--no-synthesize",
            help="First write synthetic products for the leaves with fewer than 10 labelled "
            "products with the LLM (--llm; default the bundled local model), into "
            "OUT.synthetic.jsonl (resumable), then train with them. On by default unless "
            "--synthetic is given; by default an LLM that cannot start or answer is a warning "
            "and training goes on without them, with --synthesize it is an error.",
        ),
    ] = None,
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    prior_adjustment: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=10,
            help="tau: predictions take out tau x log(the leaf's share of the real training "
            "products). Default: 1 when trained with synthetic products, else 0.",
        ),
    ] = None,
    reranker: Annotated[
        bool,
        typer.Option(
            help="Also train the cross-encoder reranker (saved in OUT/reranker; then the "
            "default general expert of this model) on the hardest training products."
        ),
    ] = False,
    teacher: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A saved domain expert (e.g. --encoder mpnet, trained on the same file) whose "
            "softened predictions this model also learns (knowledge distillation).",
        ),
    ] = None,
    teacher_weight: Annotated[
        float, typer.Option(min=0, max=1, help="The teacher's share of the loss.")
    ] = 0.5,
    teacher_temperature: Annotated[
        float, typer.Option(min=0.01, help="Softening of the teacher's distribution.")
    ] = 2.0,
    neighbours: Annotated[
        bool,
        typer.Option(
            help="Index the labelled products for the nearest-neighbour expert "
            "(MODEL/neighbours/, fused into the predictions)."
        ),
    ] = True,
    label_summaries: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A summary index (from `summarize`): each category's classifier weights start "
            "at the embedding of its path and summary instead of its path alone.",
        ),
    ] = None,
) -> None:
    """Fine-tune the domain expert (encoder + lexical expert + neighbour index), then, with
    --reranker, its cross-encoder reranker. Re-running with the same --out resumes from
    checkpoints (kept beside the model, in OUT.checkpoints, and refused if another run wrote
    them)."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; it must be a folder (new or a model's, to resume)")
    required = bool(synthesize)
    in_torchrun = "WORLD_SIZE" in os.environ  # every process would write the same file
    if synthesize and (synthetic or in_torchrun):
        raise typer.BadParameter(
            "give --synthetic or --synthesize, not both"
            if synthetic
            else "under torchrun, write them first (`dualexpert synthesize`) and pass --synthetic"
        )
    if synthesize is None:
        synthesize = synthetic is None and not in_torchrun
        if in_torchrun and synthetic is None and os.environ.get("RANK", "0") == "0":
            console.print(
                "[yellow]warning:[/] under torchrun no synthetic products are written; "
                "`dualexpert synthesize` first, then --synthetic FILE (or --nproc N)"
            )
    ddp_parent = nproc > 1 and "WORLD_SIZE" not in os.environ
    if ddp_parent and not synthesize:
        from ..training import torchrun

        raise typer.Exit(torchrun(nproc, "dualexpert.cli", _without_nproc(sys.argv[1:])))
    apply_threads(threads)
    from ..data import labelled_only
    from ..domain import DomainExpert
    from ..domain.expert import label_texts
    from ..taxonomy import Taxonomy

    cat = load_or_exit(train_file, columns, skip_bad)
    n_read = len(cat.products)
    cat = labelled_only(cat, skip_bad)
    report_skipped(train_file, n_read - len(cat.products), [])
    tax = Taxonomy.load(taxonomy) if taxonomy else None
    known = tax or Taxonomy.from_paths(p.category for p in cat.products if p.category)
    with user_errors():  # a bad setting is said before the LLM writes anything
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
            internal_nodes=internal_nodes,
            prior_adjustment=prior_adjustment,
            teacher=str(teacher) if teacher else None,
            teacher_weight=teacher_weight,
            teacher_temperature=teacher_temperature,
            neighbours=neighbours,
            label_summaries=str(label_summaries) if label_summaries else None,
        )
        if label_summaries:  # another taxonomy's summaries are said before training starts
            label_texts(known, [c.id for c in known.leaves], str(label_summaries))
    if synthesize:
        synthetic = out.with_name(f"{out.name}.synthetic.jsonl")
        _synthesize(known, cat.products, synthetic, llm, api_base, required=required)
    if ddp_parent:  # the ranks read the titles written once here
        from ..training import torchrun

        argv = [a for a in _without_nproc(sys.argv[1:]) if a != "--synthesize"]
        argv += ["--synthetic", str(synthetic)] if synthetic.is_file() else ["--no-synthesize"]
        raise typer.Exit(torchrun(nproc, "dualexpert.cli", argv))
    extra = []
    if synthetic and (synthetic.is_file() or not synthesize):
        from ..synthetic import load_synthetic

        with user_errors():  # a synthetic leaf outside the label space is an error, not a class
            extra = load_synthetic(synthetic, known)
        console.print(f"added {len(extra)} synthetic products from {synthetic}")
    legacy = out / "checkpoints"  # where dualexpert < 0.2 kept them
    ckpts = legacy if legacy.is_dir() else out.with_name(f"{out.name}.checkpoints")
    # a finished run resumes at its end
    expert.fit(cat.products, taxonomy=tax, output_dir=ckpts, synthetic=extra)
    expert.save(out)
    console.print(f"saved the domain expert to {out} (checkpoints in {ckpts})")
    if reranker:
        from ..pipeline import RERANKER
        from ..reranker import CategoryReranker

        rr = CategoryReranker(seed=seed).fit(
            cat.products, expert.taxonomy, output_dir=ckpts / RERANKER, resume=True
        )
        rr.save(out / RERANKER)
        console.print(f"saved its reranker to {out / RERANKER}")


def synthesize(
    train_file: Annotated[Path, typer.Argument(help="Labelled catalogue (csv, jsonl, parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Synthetic JSONL; a rerun resumes.")],
    taxonomy: Annotated[
        Path | None, typer.Option(help="Taxonomy file (default: the labels' own tree).")
    ] = None,
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    min_count: Annotated[
        int, typer.Option(min=1, help="Leaves with fewer labelled products get synthetic ones.")
    ] = 10,
    per_leaf: Annotated[int, typer.Option(min=1, help="Synthetic titles per leaf.")] = 8,
    max_calls: Annotated[int, typer.Option(min=1, help="LLM calls per leaf at most.")] = 3,
    examples: Annotated[
        int,
        typer.Option(
            min=0,
            help="Real titles of the leaf shown to the LLM. The bundled 1.5B model copies them "
            "instead of writing new ones, hence 0; a hosted LLM may do better with 3 to 5.",
        ),
    ] = 0,
    seed: int = 0,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Write new product titles with the LLM for the leaves with fewer than --min-count labelled
    products (the LLM as a teacher), for `train --synthetic`. Resumable."""
    apply_threads(threads)
    from ..data import labelled_only
    from ..taxonomy import Taxonomy

    cat = labelled_only(load_or_exit(train_file, columns, skip_bad), skip_bad)
    with user_errors():
        tax = (
            Taxonomy.load(taxonomy)
            if taxonomy
            else Taxonomy.from_paths([p.category for p in cat.products if p.category is not None])
        )
    _synthesize(tax, cat.products, out, llm, api_base, min_count=min_count, per_leaf=per_leaf,
                max_calls=max_calls, n_examples=examples, seed=seed)  # fmt: skip


def _synthesize(tax, products, out: Path, llm, api_base, required: bool = True, **options) -> None:
    """:func:`dualexpert.synthetic.write_synthetic` with the LLM configured and a progress bar;
    prints its totals and stops the LLM. Not ``required`` (train's default), an LLM that cannot
    be set up is a warning, and training goes on without synthetic products."""
    from ..lm import close_lm, configure_lm
    from ..synthetic import write_synthetic

    try:
        lm = configure_lm(llm, api_base)
    except Exception as e:
        if required:
            fail(f"cannot set up the LLM for synthetic products: {type(e).__name__}: {e}", EXIT_LLM)
        console.print(
            f"[yellow]warning:[/] no LLM for synthetic products ({type(e).__name__}: {e}); "
            "training without them (--no-synthesize skips this step)"
        )
        return
    try:
        with user_errors(), progress_bar() as bar:
            task = bar.add_task("synthesize", total=None)
            totals = write_synthetic(
                tax, products, out, progress=lambda i, n: bar.update(task, completed=i, total=n),
                **options,
            )  # fmt: skip
    finally:
        close_lm(lm)  # the local model's process would hold its memory through training
    console.print(json.dumps(totals))
    if totals.get("stopped"):
        if required:
            fail(f"synthesize stopped early: {totals['stopped']}", EXIT_LLM)
        console.print(
            f"[yellow]warning:[/] synthesize stopped early: {totals['stopped']}; training "
            "with what was written"
        )


def predict(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    input_file: Annotated[Path, typer.Argument(help="Catalogue to categorise.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output (appended, resumable).")],
    k: KOpt = 10,
    batch_size: BatchOpt = 256,
    quantize: QuantizeOpt = False,
    prior_adjustment: PriorOpt = None,
    runtime: RuntimeOpt = "auto",
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Write the top-K categories of each product to a JSONL file.

    Products already in the output (by id) are skipped, so an interrupted run resumes.
    """
    runtime = runtime_for(runtime, quantize)
    apply_threads(threads)
    from ..batch import predict_products
    from ..data import ReadStats, count_records, iter_catalogue
    from ..domain import DomainExpert

    with user_errors():
        expert = DomainExpert.load(model, prior_adjustment=prior_adjustment, runtime=runtime)
    expert.config.quantize = quantize
    stats = ReadStats()
    with user_errors(), progress_bar() as prog:
        prods = iter_catalogue(
            input_file, columns, on_error="skip" if skip_bad else "raise", stats=stats
        )
        task = prog.add_task("predict", total=count_records(input_file))
        totals = predict_products(
            expert, prods, out, k=k, chunk_size=batch_size, progress=lambda n: prog.advance(task, n)
        )
    report_skipped(input_file, stats.skipped, stats.errors)
    console.print(
        f"wrote {totals['products']} new prediction(s) to {out} "
        f"({totals['already_done']} already there)"
    )


def evaluate(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    test_file: Annotated[Path, typer.Argument(help="Labelled catalogue.")],
    k: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Candidate leaves (top-K) per product. Default: 10 for the domain expert's "
            f"report; with --strategy, {DUAL_K}, as classify sends the general expert.",
        ),
    ] = None,
    train_file: Annotated[
        Path | None, typer.Option(help="Training catalogue, for the head/tail split.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="Evaluate the dual expert with this strategy (auto: as classify does; "
            "zero_shot, rank, cot_rank, score, channel) instead of the domain expert alone."
        ),
    ] = None,
    representation: RepresentationOpt = "auto",
    threshold: ThresholdOpt = None,
    summaries: Annotated[Path | None, typer.Option(help="Summary index folder.")] = None,
    fusion_weight: FusionOpt = "auto",
    general: GeneralOpt = "auto",
    llm_tier: LlmTierOpt = 0.0,
    prior_adjustment: PriorOpt = None,
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score a random sample of this size.")
    ] = None,
    seed: int = 0,
    run_file: Annotated[
        Path | None, typer.Option(help="JSONL of the dual run (resumable).")
    ] = None,
    quantize: QuantizeOpt = False,
    runtime: RuntimeOpt = "auto",
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Inference batch size (default: the model's).")
    ] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Per-level accuracy, P/R/F1 (weighted, macro), top-K recall and head/tail scores; with
    --strategy, the dual expert against the domain expert alone on the same products."""
    from ..domain import DomainExpert
    from ..evaluation import evaluate_domain_expert, summarise_records
    from ..evaluation.dual import run_file_for

    runtime = runtime_for(runtime, quantize)
    writable_report(json_out, test_file, train_file)
    if strategy is not None:  # the dual expert against the domain expert alone
        k = k or DUAL_K
        de = _dual_expert(llm, api_base, model, strategy, representation, k, threshold,
                          summaries, fusion_weight, general=general, llm_tier=llm_tier,
                          prior_adjustment=prior_adjustment, runtime=runtime)  # fmt: skip
        representation = de.representation  # "auto" resolved
        prods = _labelled(test_file, columns, skip_bad, limit, seed)
        run_file = run_file or run_file_for(
            "eval", strategy, representation, model=model, data=test_file, k=k,
            threshold=de.threshold, summaries=summaries, fusion_weight=fusion_weight, llm=llm,
            api_base=api_base, general=general, llm_tier=llm_tier,
            prior_adjustment=prior_adjustment,
        )  # fmt: skip
        summary = summarise_records(_run_dual(de, prods, run_file))
        summary["config"] = {
            "strategy": strategy,
            "representation": representation,
            "k": k,
            "threshold": de.threshold,
            "fusion_weight": de.fusion_weight,
            "general": type(de.general).__name__,
            "llm_tier": llm_tier,
            "prior_adjustment": de.retriever.domain.prior_adjustment_,
            "llm": llm,
            "limit": limit,
            "seed": seed,
        }
        _print_dual(summary, strategy, representation)
        if json_out:
            json_out.write_text(json.dumps(summary, indent=1))
        return
    with user_errors():
        expert = DomainExpert.load(model, prior_adjustment=prior_adjustment, runtime=runtime)
    expert.config.quantize = quantize
    if batch_size is not None:
        expert.config.eval_batch_size = batch_size
    cat = load_or_exit(test_file, columns, skip_bad)
    counts = None
    if train_file:
        counts = Counter(load_or_exit(train_file, columns, skip_bad).paths)
    report = evaluate_domain_expert(expert, cat.products, counts, k=k or REPORT_K)
    _print_report(report)
    if json_out:
        json_out.write_text(json.dumps(report, indent=1))


def export_onnx(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
) -> None:
    """Add an ONNX export of the encoder to a saved model (MODEL/onnx/).

    predict, classify and evaluate then run the encoder on ONNX Runtime (--runtime auto, the
    default): the same predictions, without importing torch, so start-up takes a fraction of
    a second. Needs the onnx extra: pip install 'dualexpert[onnx]'.
    """
    from ..domain.onnx_export import export_onnx as export

    with user_errors():
        folder = export(model)
    console.print(f"exported the encoder to {folder}")


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
    from ..domain import DomainExpert
    from ..indexes import SummaryIndex
    from ..lm import configure_lm

    configure_lm(llm, api_base, max_tokens)
    tax = DomainExpert.load(model).taxonomy
    cat = load_or_exit(train_file, columns, skip_bad)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar() as prog:
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


def index(
    folder: Annotated[Path, typer.Argument(help="Summary index folder.")],
    search: Annotated[
        str | None, typer.Option(help="Show the summaries nearest this text.")
    ] = None,
    update: Annotated[str | None, typer.Option(help="Category id to (re)write.")] = None,
    summary: Annotated[str | None, typer.Option(help="New summary text for --update.")] = None,
    k: KOpt = 5,
) -> None:
    """Search a summary index, or update one category's summary."""
    from ..indexes import SummaryIndex

    ix = SummaryIndex.load(folder)
    if update:
        if not summary:
            fail("--update needs --summary")
        ix.update(update, summary)
        ix.save(folder)
        console.print(f"updated {update!r}")
    if search:
        for cid, score, text in ix.search(search, k=k):
            Console().print(f"{score:.3f}  {cid}\n       {text}", markup=False)
    if not (update or search):
        console.print(f"{len(ix)} summaries, embedder {ix.embedder}, built {ix.built_at}")


def classify(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    input_file: Annotated[Path, typer.Argument(help="Catalogue to categorise.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output (appended, resumable).")],
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    strategy: StrategyOpt = "auto",
    representation: RepresentationOpt = "auto",
    k: KOpt = DUAL_K,
    threshold: ThresholdOpt = None,
    summaries: Annotated[Path | None, typer.Option(help="Summary index folder.")] = None,
    fusion_weight: FusionOpt = "auto",
    program: Annotated[Path | None, typer.Option(help="Compiled general expert JSON.")] = None,
    general: GeneralOpt = "auto",
    llm_tier: LlmTierOpt = 0.0,
    prior_adjustment: PriorOpt = None,
    runtime: RuntimeOpt = "auto",
    limit: LimitOpt = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU threads. Default: what this process may use (the smallest of its CPU "
            "affinity, the cgroup CPU quota and OMP_NUM_THREADS). With --engine ray: the CPUs "
            "each worker reserves (default 1).",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            help="LLM requests in flight at once (a hosted LLM serves them concurrently; the "
            "local one decodes them together in one llama.cpp batch).",
        ),
    ] = 4,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Products per batched domain-expert pass.")
    ] = 64,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds one LLM request may take (then: fallback).")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (Ray Data; --out is a folder).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (auto: the running one).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray: domain-expert actors.")] = 2,
    shard_size: Annotated[
        int, typer.Option(min=1, help="Ray: products per output shard (the unit of resume).")
    ] = 100_000,
) -> None:
    """Categorise a file with both experts; uncertain products go to the LLM.

    The catalogue is streamed in chunks; records are written in input order as each chunk
    finishes, and a rerun on the same --out resumes by id. With --engine ray the same stages
    run on Ray Data; --out is then a folder of Parquet shards, and a rerun skips finished ones.
    """
    runtime = runtime_for(runtime, False)
    if engine == "ray":
        from ..data import ReadStats
        from ..scale import classify_file, require_ray

        require_ray()  # a missing extra is one line, before anything starts
        stats = ReadStats()
        with user_errors(), progress_bar() as prog:
            task = prog.add_task("classify (ray)", total=limit)
            totals = classify_file(
                input_file, out, model, columns=columns, skip_bad=skip_bad,
                shard_size=shard_size, address=address, limit=limit, stats=stats,
                progress=lambda n: prog.advance(task, n), strategy=strategy,
                representation=representation, k=k, threshold=threshold,
                fusion_weight=fusion_weight, summaries=str(summaries) if summaries else None,
                program=str(program) if program else None, general=general,
                llm_tier=llm_tier, prior_adjustment=prior_adjustment, runtime=runtime,
                llm=llm, api_base=api_base, timeout=timeout, workers=workers,
                threads=threads or 1, batch_size=chunk_size, llm_concurrency=concurrency,
            )  # fmt: skip
        report_skipped(input_file, stats.skipped, stats.errors)
        typer.echo(json.dumps(totals))
        return
    if engine != "local":
        fail(f"--engine must be local or ray, not {engine!r}")
    apply_threads(threads)
    from itertools import islice

    from ..batch import classify_products
    from ..data import ReadStats, count_records, iter_catalogue

    de = _dual_expert(llm, api_base, model, strategy, representation, k, threshold, summaries,
                      fusion_weight, program, timeout=timeout, general=general,
                      llm_tier=llm_tier, parallel=concurrency,
                      prior_adjustment=prior_adjustment, runtime=runtime)  # fmt: skip
    stats = ReadStats()
    with user_errors(), progress_bar(stats_fields=True) as prog:
        total = count_records(input_file)
        prods = iter_catalogue(
            input_file, columns, on_error="skip" if skip_bad else "raise", stats=stats
        )
        if limit is not None:
            prods = islice(prods, limit)
            total = min(total, limit) if total is not None else limit
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
    totals["bad_records_skipped"] = stats.skipped
    report_skipped(input_file, stats.skipped, stats.errors)
    typer.echo(json.dumps(totals))  # one machine-readable line on stdout, never wrapped


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
    k: KOpt = DUAL_K,
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
    from ..domain import DomainExpert
    from ..indexes import SummaryIndex
    from ..lm import configure_lm
    from ..optimizers import BudgetExceeded, build_examples, parse_settings
    from ..optimizers import optimize as run_optimize

    with user_errors():
        settings = parse_settings(setting or [])
        expert = DomainExpert.load(model)
        index = SummaryIndex.load(summaries) if summaries else None
    tr = _labelled(train, columns, skip_bad, limit_train, seed)
    dv = _labelled(dev, columns, skip_bad, limit_dev, seed + 1)
    train_ids = {p.id for p in tr}
    dv = [p for p in dv if not p.id or p.id not in train_ids]
    opts = dict(k=k, representation=representation, summaries=index)
    trainset, devset = build_examples(expert, tr, **opts), build_examples(expert, dv, **opts)
    lm = configure_lm(llm, api_base)
    with progress_bar() as prog:
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
            fail(f"budget: {e}", EXIT_BUDGET)
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


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _dual_expert(
    llm: str | None,
    api_base: str | None,
    model: Path,
    strategy: str,
    representation: str,
    k: int,
    threshold: float | None,
    summaries: Path | None,
    fusion_weight: str,
    program: Path | None = None,
    timeout: float | None = None,
    general: str = "auto",
    llm_tier: float = 0.0,
    parallel: int = 1,
    prior_adjustment: float | None = None,
    runtime: str = "auto",
):
    """Configure the LM and load the dual expert, bad files reported as one line."""
    from ..lm import configure_lm
    from ..pipeline import load_dual_expert

    with user_errors():
        configure_lm(llm, api_base, timeout=timeout, parallel=parallel)
        return load_dual_expert(
            model, strategy, representation, k, threshold, summaries, fusion_weight, program,
            general=general, llm_tier=llm_tier, prior_adjustment=prior_adjustment,
            runtime=runtime,
        )  # fmt: skip


def _labelled(path: Path, columns: str | None, skip_bad: bool, limit: int | None, seed: int):
    from ..data import sample_labelled

    return sample_labelled(load_or_exit(path, columns, skip_bad).products, limit, seed)


def _run_dual(de, prods: list, run_file: Path) -> list[dict]:
    from ..evaluation.dual import run_dual

    with progress_bar() as prog:
        task = prog.add_task("classify", total=len(prods))
        return run_dual(de, prods, run_file, progress=lambda n: prog.advance(task, n))


def _print_dual(summary: dict, strategy: str, representation: str) -> None:
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


def threshold(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    dev_file: Annotated[Path, typer.Argument(help="Labelled dev catalogue.")],
    plot: Annotated[Path, typer.Option(help="PNG of accuracy and traffic.")] = Path(
        "runs/threshold.png"
    ),
    strategy: StrategyOpt = "auto",
    representation: RepresentationOpt = "auto",
    k: KOpt = DUAL_K,
    summaries: Annotated[Path | None, typer.Option(help="Summary index folder.")] = None,
    max_traffic: Annotated[float, typer.Option(help="Cap on the share sent to the LLM.")] = 1.0,
    general: GeneralOpt = "auto",
    llm_tier: LlmTierOpt = 0.0,
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    limit: LimitOpt = None,
    seed: int = 0,
    run_file: Annotated[Path | None, typer.Option(help="JSONL of the dev run (resumable).")] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Choose the routing threshold (and fusion weight) on a dev set and plot the trade-off."""
    from ..evaluation.dual import run_file_for
    from ..evaluation.routing import (
        choose_fusion_weight,
        choose_threshold,
        plot_curve,
        threshold_curve,
    )

    de = _dual_expert(llm, api_base, model, strategy, representation, k, 1.01, summaries, None,
                      general=general, llm_tier=llm_tier)  # fmt: skip
    representation = de.representation  # "auto" resolved
    prods = _labelled(dev_file, columns, skip_bad, limit, seed)
    run_file = run_file or run_file_for(
        "threshold", strategy, representation, model=model, data=dev_file, k=k,
        summaries=summaries, llm=llm, api_base=api_base, general=general, llm_tier=llm_tier,
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
