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

app = typer.Typer(no_args_is_help=True, help="Dual-expert product categorisation.")
console = Console(stderr=True)

ColumnsOpt = Annotated[
    str | None,
    typer.Option(help="Column preset (mwpd, bigbasket, default) or a JSON ColumnMap."),
]
SkipOpt = Annotated[bool, typer.Option(help="Skip bad records (counted) instead of stopping.")]


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
    epochs: float = 3.0,
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
    taxonomy: Annotated[Path | None, typer.Option(help="Taxonomy file for the label space.")] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Fine-tune the domain expert. Re-running with the same --out resumes from checkpoints."""
    from .domain import DomainExpert
    from .taxonomy import Taxonomy

    cat = _load(train_file, columns, skip_bad)
    expert = DomainExpert(
        encoder=encoder, epochs=epochs, batch_size=batch_size, max_length=max_length,
        learning_rate=learning_rate, seed=seed, label_augmentation=label_augmentation,
        focal=focal, bootstrap=bootstrap, gamma=gamma, beta=beta, gate=gate,
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
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Write the top-K categories of each product to a JSONL file.

    Products already in the output (by id) are skipped, so an interrupted run resumes.
    """
    from .domain import DomainExpert

    expert = DomainExpert.load(model)
    cat = _load(input_file, columns, skip_bad)
    done = set()
    if out.exists():
        with out.open(encoding="utf-8") as f:
            done = {json.loads(line)["id"] for line in f if line.strip()}
    todo = [p for p in cat.products if p.id not in done]
    with _progress() as prog, out.open("a", encoding="utf-8") as f:
        task = prog.add_task("predict", total=len(todo))
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for p, cands in zip(batch, expert.predict_topk(batch, k=k), strict=True):
                rec = {"id": p.id, "title": p.title, "category": cands[0].id,
                       "candidates": [{"id": c.id, "path": list(c.path),
                                       "probability": round(c.probability, 6)} for c in cands]}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            prog.advance(task, len(batch))
    console.print(f"wrote {len(todo)} new prediction(s) to {out} ({len(done)} already there)")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="A saved domain expert folder.")],
    test_file: Annotated[Path, typer.Argument(help="Labelled catalogue.")],
    k: int = 10,
    train_file: Annotated[
        Path | None, typer.Option(help="Training catalogue, for the head/tail split.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    columns: ColumnsOpt = None,
    skip_bad: SkipOpt = False,
) -> None:
    """Per-level accuracy, P/R/F1 (weighted, macro), top-K recall and head/tail scores."""
    from .domain import DomainExpert
    from .evaluation import evaluate_domain_expert

    expert = DomainExpert.load(model)
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
) -> None:
    """End to end on the shipped demo catalogue with the embedded defaults."""
    from .demo import run_demo

    result = run_demo(out, epochs=epochs)
    table = Table(title=f"demo catalogue: {result['n_train']} train / {result['n_test']} test")
    cols = ["lvl3_accuracy", "lvl3_f1_weighted", "lvl3_f1_macro", "top3_recall",
            "fit_seconds", "products_per_second"]
    table.add_column("system")
    for c in cols:
        table.add_column(c)
    for r in result["rows"]:
        table.add_row(r["system"], *(f"{r[c]:.3f}" if r[c] < 10 else f"{r[c]:.0f}" for c in cols))
    Console().print(table)
    console.print(f"wrote {out / 'demo.json'}")


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


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console,
    )


if __name__ == "__main__":
    app()
