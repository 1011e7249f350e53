"""Relevance commands: ``rationales``, ``distill`` and the ``relevance`` group. Like every
command, they only parse arguments and call the Python API in :mod:`dualexpert.relevance`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..threads import apply_threads
from .common import ApiBaseOpt, LlmOpt, ThreadsOpt, console, fail, progress_bar, user_errors

relevance_app = typer.Typer(no_args_is_help=True, help="Query–product relevance scoring.")

SplitOpt = Annotated[
    str,
    typer.Option(help="Which side of the split-by-query to use: train, test or all."),
]
TestFracOpt = Annotated[float, typer.Option(help="Share of queries held out as the test side.")]
ThresholdOpt = Annotated[float, typer.Option(help="Label = relevance >= this.")]


def _pairs(path: Path, split: str, test_fraction: float, seed: int, sample: int | None, thr: float):
    from ..relevance.data import load_pairs, sample_pairs, split_by_query

    with user_errors():
        pairs = load_pairs(path, threshold=thr)
    if split != "all":
        if split not in ("train", "test"):
            fail(f"--split must be train, test or all, not {split!r}")
        train, test = split_by_query(pairs, test_fraction, seed=0)
        pairs = train if split == "train" else test
    return sample_pairs(pairs, sample, seed) if sample else pairs


def rationales(
    pairs: Annotated[Path, typer.Argument(help="Labelled pairs (CSV/JSONL/Parquet).")],
    out: Annotated[Path, typer.Option(help="Rationale JSONL; a rerun resumes it.")],
    llm: LlmOpt = None,
    api_base: ApiBaseOpt = None,
    split: SplitOpt = "train",
    test_fraction: TestFracOpt = 0.2,
    sample: Annotated[int | None, typer.Option(help="A fixed random sample of N pairs.")] = None,
    seed: Annotated[int, typer.Option(help="Sample seed.")] = 0,
    threshold: ThresholdOpt = 2.5,
    adapter: Annotated[
        str,
        typer.Option(
            help="brief (default: the bare rationale after the demos, fewest tokens), json "
            "(constrained output) or chat (DSPy's ChatAdapter). A rationale cut by the token cap "
            "is trimmed to its last full sentence."
        ),
    ] = "brief",
    parallel: Annotated[
        int,
        typer.Option(
            min=1,
            help="Pairs in flight: threads for a hosted LLM; the local LLM decodes this many in "
            "one llama.cpp batch (with the brief or chat adapter).",
        ),
    ] = 16,
    threads: ThreadsOpt = None,
) -> None:
    """Write an LLM rationale for each labelled pair (paper 4.3), resumable."""
    apply_threads(threads)
    import dspy

    from ..adapters import BriefChatAdapter
    from ..lm import configure_lm
    from ..relevance.rationales import write_rationales

    adapters = {"brief": BriefChatAdapter, "json": dspy.JSONAdapter, "chat": dspy.ChatAdapter}
    if adapter not in adapters:
        raise typer.BadParameter("adapter must be brief, json or chat", param_hint="--adapter")
    todo = _pairs(pairs, split, test_fraction, seed, sample, threshold)
    with user_errors():
        configure_lm(llm, api_base, parallel=parallel)
    dspy.configure(adapter=adapters[adapter]())
    with progress_bar() as bar:
        task = bar.add_task("rationales", total=len(todo))
        totals = write_rationales(
            todo, out, progress=lambda n: bar.advance(task, n), parallel=parallel
        )
    console.print(json.dumps(totals))


def distill(
    pairs: Annotated[Path, typer.Argument(help="Labelled pairs (CSV/JSONL/Parquet).")],
    out: Annotated[Path, typer.Option(help="Folder for the exported CrossEncoder.")],
    rationales_file: Annotated[
        Path | None, typer.Option("--rationales", help="Rationale JSONL (from `rationales`).")
    ] = None,
    aux: Annotated[
        str, typer.Option(help="decoder, embedding, tags or none (plain CE).")
    ] = "decoder",
    encoder: Annotated[str, typer.Option(help="minilm, mpnet, or a HF name/folder.")] = "minilm",
    decoder: Annotated[
        str | None,
        typer.Option(
            help="smollm2 (pretrained, frozen, reads encoder states as a prefix), a "
            "folder, or default: a BERT-style decoder from the encoder."
        ),  # fmt: skip
    ] = None,
    lam: Annotated[float, typer.Option(help="Weight of the rationale loss.")] = 0.1,
    warmup: Annotated[bool, typer.Option(help="Decoder warm-up, frozen encoder first.")] = True,
    ignore_cls: Annotated[bool, typer.Option(help="Hide CLS from the decoder.")] = False,
    prior: Annotated[
        str,
        typer.Option(
            help="none (plain), or combine the cross-encoder with a logistic regression on "
            "feature groups joined by '+': cosine, lexical, overlap (saved with it in prior/)."
        ),
    ] = "cosine+lexical+overlap",
    combine: Annotated[
        str,
        typer.Option(
            help="With a prior: stack (the cross-encoder learns alone; held-out queries weigh "
            "it against the prior) or residual (it learns a correction of the prior)."
        ),
    ] = "stack",
    warm_start: Annotated[
        str,
        typer.Option(
            help="With --combine stack: prior (the cross-encoder first learns the prior's "
            "probabilities on unlabelled pairs, then the labels) or none."
        ),
    ] = "prior",
    unlabelled_file: Annotated[
        Path | None,
        typer.Option(
            "--unlabelled",
            help="Unlabelled pairs for the warm start (CSV/JSONL/Parquet, query and title; "
            "e.g. a search log; keep evaluation queries out). Default: the training pairs' "
            "queries with their nearest titles.",
        ),
    ] = None,
    warm_start_pairs: Annotated[
        int, typer.Option(help="Unlabelled pairs the warm start learns from (at most).")
    ] = 8000,
    correction_holdout: Annotated[
        float,
        typer.Option(
            help="With a prior: share of training queries held out to weigh the cross-encoder "
            "(0: stack falls back to residual, kept as trained)."
        ),
    ] = 0.1,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    split: SplitOpt = "train",
    test_fraction: TestFracOpt = 0.2,
    sample: Annotated[int | None, typer.Option(help="Train on a sample of N pairs.")] = None,
    threshold: ThresholdOpt = 2.5,
    resume: Annotated[bool, typer.Option(help="Resume from the last checkpoint.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Train a cross-encoder with rationale distillation and export it (paper 4.3)."""
    apply_threads(threads)
    from ..relevance.distill import RelevanceDistiller
    from ..relevance.rationales import load_rationales

    todo = _pairs(pairs, split, test_fraction, 0, sample, threshold)
    rat = load_rationales(rationales_file) if rationales_file else None
    unlabelled = None
    if unlabelled_file is not None:
        from ..relevance.data import load_pairs

        with user_errors():
            unlabelled = load_pairs(unlabelled_file, threshold=threshold)
    if aux != "none":
        if rat is None:
            fail(f"--aux {aux} needs --rationales")
        missing = [p.id for p in todo if p.id not in rat]
        if missing:
            console.print(f"[yellow]{len(missing)} pair(s) have no rationale; left out[/yellow]")
            todo = [p for p in todo if p.id in rat]
    with user_errors():
        model = RelevanceDistiller(
            encoder=encoder,
            aux=aux,
            decoder=decoder,
            lam=lam,
            decoder_warmup=warmup,
            ignore_cls=ignore_cls,
            prior=prior,
            combine=combine,
            warm_start=warm_start,
            warm_start_pairs=warm_start_pairs,
            correction_holdout=correction_holdout,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
        ).fit(
            todo,
            rat,
            output_dir=out.with_name(f"{out.name}.checkpoints"),
            resume=resume,
            unlabelled=unlabelled,
        )
    model.save(out)
    scale = ""
    if model.prior_ is not None:
        what = "correction" if model.combine_ == "residual" else "cross-encoder"
        scale = f", {model.combine_}: {what} weighed {model.correction_scale_:.2f}"
    console.print(f"exported CrossEncoder to {out} ({len(todo)} training pairs{scale})")
    if w := model.warm_start_:
        n, src, sec = w["pairs"], w["source"], w["seconds"]
        console.print(f"warm start: {n} {src} unlabelled pairs ({sec:.0f} s)")
    if h := model.holdout_:
        alone = (f"unscaled {h['roc_auc_unscaled']:.4f}" if model.combine_ == "residual"
                 else f"cross-encoder alone {h['roc_auc_cross']:.4f}")  # fmt: skip
        console.print(
            f"held-out queries ({h['queries']}, {h['pairs']} pairs): ROC-AUC prior "
            f"{h['roc_auc_prior']:.4f}, model {h['roc_auc']:.4f} ({alone})"
        )


@relevance_app.command("evaluate")
def relevance_evaluate(
    model: Annotated[Path, typer.Argument(help="Exported relevance model folder.")],
    pairs: Annotated[Path, typer.Argument(help="Labelled pairs (CSV/JSONL/Parquet).")],
    split: SplitOpt = "test",
    test_fraction: TestFracOpt = 0.2,
    sample: Annotated[int | None, typer.Option(help="Evaluate a sample of N pairs.")] = None,
    threshold: ThresholdOpt = 2.5,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report.")] = None,
) -> None:
    """ROC-AUC, accuracy, precision and recall at 0.5 and 0.7, and pairs per second."""
    import time

    from rich.console import Console
    from rich.table import Table

    from ..evaluation.metrics import binary_report
    from ..relevance.scorer import RelevanceScorer

    todo = _pairs(pairs, split, test_fraction, 0, sample, threshold)
    scorer = RelevanceScorer(model)
    t0 = time.perf_counter()
    prob = scorer.predict_proba(todo)
    report = binary_report([p.label for p in todo], prob)
    report["pairs_per_second"] = len(todo) / max(time.perf_counter() - t0, 1e-9)
    table = Table("metric", "value")
    for k, v in report.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


@relevance_app.command("predict")
def relevance_predict(
    model: Annotated[Path, typer.Argument(help="Exported relevance model folder.")],
    pairs: Annotated[Path, typer.Argument(help="Pairs (CSV/JSONL/Parquet); labels optional.")],
    out: Annotated[Path, typer.Option(help="JSONL of id, query, title, probability.")],
    batch_size: Annotated[int, typer.Option(min=1, help="Pairs per batch.")] = 64,
) -> None:
    """Score every pair; a rerun skips pairs already in the output."""
    from ..relevance.scorer import RelevanceScorer, score_pairs

    todo = _pairs(pairs, "all", 0.2, 0, None, 2.5)
    with user_errors():
        scorer = RelevanceScorer(model, batch_size=batch_size)
    with progress_bar() as bar:
        task = bar.add_task("scoring", total=len(todo))
        totals = score_pairs(
            scorer, todo, out, batch_size=batch_size, progress=lambda n: bar.advance(task, n)
        )
    console.print(
        f"wrote {totals['pairs']} new score(s) to {out} ({totals['already_done']} already there)"
    )
