"""``classify`` on Ray Data: the two stages of :mod:`dualexpert.batch` as ``map_batches`` stages.

- **Stage 1**, an actor pool of ``workers`` actors: each loads the domain expert once (a local
  folder, or any URI that ``fsspec`` reads) and runs :func:`~dualexpert.batch.stage_one` on its
  batches: confident rows are done; routed rows carry their candidates on.
- **Stage 2**, one actor with ``llm_concurrency`` threads: the routed rows go to the general
  expert (:func:`~dualexpert.batch.stage_two`). One actor makes the cap on LLM requests in flight
  global, whatever the number of nodes: a hosted LLM's rate limit is per account, not per node.
  Confident rows pass through untouched.

Rows are keyed by ``id`` (Ray Data does not keep the input order). Actors restart when their
process dies and their batches are retried, so a killed worker loses no row: Ray Data's own
default for actor pools (``max_restarts=-1``, ``max_task_retries=-1``). It is not passed again
here: extra remote arguments to ``map_batches`` are deprecated from Ray 2.60 and go in 2.64.
:func:`classify_file` adds resume on top: the input is cut into shards, each written as its own
Parquet folder once complete, and a rerun skips the shards already written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: columns of the output besides ``record`` (the full JSON record, as ``classify`` writes it)
OUTPUT_COLUMNS = ("id", "category", "routed", "decision", "fallback", "fallback_reason")
#: idle worker processes a local Ray keeps for reuse beyond Ray's default of one per CPU (see
#: :func:`local_ray_options`)
EXTRA_IDLE_WORKERS = 16


def require_ray() -> Any:
    """``ray``, or an error that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(
            "the Ray engine needs Ray Data: pip install 'dualexpert[ray]' "
            "(or pip install 'ray[data]')"
        ) from None
    return ray


def local_model(model: str | Path) -> Path:
    """A local folder holding the saved model: ``model`` itself, or a copy of a remote URI
    (``s3://``, ``gs://``, ... through ``fsspec``) in a temporary folder of this process."""
    text = str(model)
    if "://" not in text or text.startswith("file://"):
        path = Path(text.removeprefix("file://"))
        if not (path / "dualexpert.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a saved domain expert folder")
        return path
    import fsspec

    fs, root = fsspec.core.url_to_fs(text)
    if not fs.exists(f"{root}/dualexpert.json"):
        raise FileNotFoundError(f"{text}/dualexpert.json does not exist")
    dest = Path(tempfile.mkdtemp(prefix="dualexpert-model-"))
    fs.get(f"{root}/", str(dest), recursive=True)
    return dest


def local_ray_options(cpus: int) -> dict[str, Any]:
    """``ray.init`` options for the Ray this process starts itself on ``cpus`` cores.

    Ray keeps about one idle worker process per CPU and kills the others after a second idle.
    This job keeps more processes than a 2-core node has CPUs (the stage actors, Ray Data's own
    actors, the writer), so the writer's process was killed between its tasks and a new Python
    process started for the next one: 13 extra process starts in a 20,000-product run on 2
    cores, 5 to 13 % of the CPU time the job used. A soft limit of ``cpus`` + 16 keeps the idle
    processes for reuse (it starts none), and is never below Ray's own default on a larger node.
    On a cluster started with ``ray start``, set ``RAY_num_workers_soft_limit`` (the node's CPUs
    + 16) in that command's environment for the same effect.
    """
    limit = cpus + EXTRA_IDLE_WORKERS
    return {"num_cpus": cpus, "_system_config": {"num_workers_soft_limit": limit}}


class _Stage:
    """What both stages' actors share: the dual expert, loaded once per actor, when the actor
    first needs it (a stage-2 actor that only passes confident rows on never loads it)."""

    def __init__(
        self, model: str, options: dict[str, Any], llm: dict[str, Any] | None, threads: int = 1
    ) -> None:
        from ..threads import apply_threads

        apply_threads(threads)  # the CPUs the actor reserved: several actors share a node
        self.model, self.options, self.llm = model, options, llm
        self._program: Any = None

    @property
    def program(self) -> Any:
        if self._program is None:
            from ..lm import configure_lm
            from ..pipeline import load_dual_expert

            if self.llm is not None:
                configure_lm(**self.llm)
            self._program = load_dual_expert(local_model(self.model), **self.options)
        return self._program


class DomainStage(_Stage):
    """Stage 1 on a batch (a ``pyarrow.Table`` of product rows)."""

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from ..batch import stage_one
        from ..data import Product

        prods = [Product(**_product_fields(r)) for r in batch.to_pylist()]
        rows = []
        for item in stage_one(self.program, prods):
            if isinstance(item, tuple):
                prod, cands, _, secs = item
                job = {
                    "product": prod.model_dump(mode="json"),
                    "candidates": [[c.id, list(c.path), c.probability] for c in cands],
                    "seconds": secs,
                }
                blank = dict.fromkeys(OUTPUT_COLUMNS, None)
                rows.append({**blank, "id": prod.id, "record": "", "job": json.dumps(job)})
            else:  # final already: stage 2 passes it on without parsing it again
                rows.append({**_output_row(item), "job": ""})
        return pa.Table.from_pylist(rows)


class GeneralStage(_Stage):
    """Stage 2 on a batch: routed rows to the general expert, the others passed through."""

    def __init__(self, model: str, options: dict, llm: dict | None, concurrency: int) -> None:
        super().__init__(model, options, llm)
        self.concurrency = concurrency

    def __call__(self, batch: Any) -> Any:
        if not any(batch.column("job").to_pylist()):  # nothing routed: pass on, no imports
            return batch.drop_columns(["job"])
        import pyarrow as pa

        from ..batch import stage_two
        from ..data import Product
        from ..domain import Candidate

        rows = batch.to_pylist()
        jobs, where = [], []
        for i, r in enumerate(rows):
            if r["job"]:
                job = json.loads(r["job"])
                cands = [Candidate(c, tuple(p), float(q)) for c, p, q in job["candidates"]]
                prod = Product(**job["product"])
                jobs.append((prod, cands, self.program.route(cands), job["seconds"]))
                where.append(i)
        out = [{k: v for k, v in r.items() if k != "job"} for r in rows]
        if jobs:
            answers = stage_two(self.program, jobs, self.concurrency)
            for i, rec in zip(where, answers, strict=True):
                out[i] = _output_row(rec)
        return pa.Table.from_pylist(out)


def _holds(folder: Path, shard: list[Any]) -> bool:
    """Whether a written shard holds exactly these products (ids, with repeats)."""
    import pyarrow.parquet as pq

    written = pq.read_table(folder, columns=["id"]).column("id").to_pylist()
    return sorted(written) == sorted(p.id for p in shard)


def _check_threads_fit(threads: int) -> None:
    """An actor that asks more CPUs than any node of the running Ray has would wait forever."""
    import ray

    if not ray.is_initialized():
        return  # Ray Data starts a local Ray later, on this machine's CPUs
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n.get("Resources", {}).get("CPU", 0) for n in nodes), default=0)
    if threads > largest:
        raise ValueError(
            f"threads={threads}: each worker would reserve {threads} CPUs, but the largest "
            f"node of this Ray has {largest:g}"
        )


def _product_fields(row: dict[str, Any]) -> dict[str, Any]:
    cat = row.get("category")
    return {
        "id": str(row.get("id") or ""),
        "title": row["title"],
        "description": row.get("description") or "",
        "context": row.get("context") or "",
        "category": tuple(cat) if cat else None,
    }


def _output_row(rec: dict[str, Any]) -> dict[str, Any]:
    row = {k: rec.get(k) for k in OUTPUT_COLUMNS}
    row["fallback_reason"] = str(row["fallback_reason"] or "")
    row["record"] = json.dumps(rec, ensure_ascii=False)
    return row


def driver_strategy(
    strategy: str, program: str | None, llm: str | None, api_base: str | None
) -> str:
    """``"auto"`` resolved for the LLM the job names (:func:`~dualexpert.pipeline.
    auto_strategy`): stage-1 actors have no LLM configured, and they route by the strategy's
    threshold (:func:`~dualexpert.pipeline.resolve_threshold`). A compiled program's own
    strategy is read by ``load_dual_expert``."""
    from ..lm import is_local
    from ..pipeline import STRATEGY_AUTO, auto_strategy

    if strategy != STRATEGY_AUTO or program is not None:
        return strategy
    return auto_strategy(is_local(llm, api_base))


def classify_dataset(
    ds: Any,
    model: str | Path,
    *,
    strategy: str = "auto",
    representation: str = "auto",
    k: int = 5,
    threshold: float | None = None,
    fusion_weight: float | str | None = "auto",
    summaries: str | None = None,
    program: str | None = None,
    general: str = "auto",
    llm_tier: float = 0.0,
    prior_adjustment: float | None = None,
    runtime: str = "auto",
    llm: str | None = None,
    api_base: str | None = None,
    timeout: float | None = None,
    workers: int = 2,
    threads: int = 1,
    batch_size: int = 256,
    llm_concurrency: int = 16,
) -> Any:
    """Classify a Ray Dataset of products; returns a Dataset of records keyed by ``id``.

    Args:
        ds: rows with ``title`` and optionally ``id``, ``description``, ``context``,
            ``category`` (a list).
        model: a saved domain expert folder, or a URI ``fsspec`` reads.
        strategy, representation, k, threshold, fusion_weight, summaries, program, general,
        llm_tier, prior_adjustment, runtime: as for
            :func:`~dualexpert.pipeline.load_dual_expert` (paths every node can read).
        llm, api_base, timeout: the general expert's LLM (as for
            :func:`~dualexpert.lm.configure_lm`).
        workers: stage-1 actors.
        threads: CPUs (and encoder threads) each stage-1 actor reserves.
        batch_size: products per stage-1 batch.
        llm_concurrency: LLM requests in flight, for the whole job.

    Returns:
        A Dataset with ``id``, ``category``, ``routed``, ``decision``, ``fallback``,
        ``fallback_reason`` and ``record`` (the full JSON record).
    """
    ray = require_ray()
    from ..checks import whole_number

    for name, value in (("workers", workers), ("threads", threads), ("batch_size", batch_size)):
        whole_number(name, value)
    if "://" not in str(model):
        local_model(model)  # a missing model is one error here, not one per actor
    _check_threads_fit(threads)
    from ..pipeline import resolve_fusion_weight

    resolve_fusion_weight(fusion_weight, reranker=True)  # so is a bad value (it only parses)
    if prior_adjustment is not None and not prior_adjustment >= 0:
        raise ValueError(f"prior_adjustment must be 0 or more, not {prior_adjustment!r}")
    if runtime not in ("auto", "torch", "onnx"):
        raise ValueError(f"runtime must be auto, torch or onnx, not {runtime!r}")
    options = dict(
        strategy=driver_strategy(strategy, program, llm, api_base),
        representation=representation,
        k=k,
        threshold=threshold,
        fusion_weight=fusion_weight,
        summaries=summaries,
        program=program,
        general=general,
        llm_tier=llm_tier,
        prior_adjustment=prior_adjustment,
        runtime=runtime,
    )
    lm = dict(spec=llm, api_base=api_base, timeout=timeout)
    pool = ray.data.ActorPoolStrategy
    stage1 = ds.map_batches(
        DomainStage,
        fn_constructor_kwargs={
            "model": str(model),
            "options": options,
            "llm": None,
            "threads": threads,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=pool(size=workers),  # ``concurrency=`` is deprecated from Ray 2.51
        num_cpus=threads,
    )
    return stage1.map_batches(
        GeneralStage,
        fn_constructor_kwargs={
            "model": str(model),
            "options": options,
            "llm": lm,
            "concurrency": llm_concurrency,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=pool(size=1),
        # it mostly waits on the LLM: with a CPU of its own it could only start once stage 1
        # had released the cores it fills, i.e. after stage 1 (measured: a 12 s tail on 20,000
        # products with 2 workers on 2 cores)
        num_cpus=0,
    )


def classify_file(
    input_file: str | Path,
    out: str | Path,
    model: str | Path,
    *,
    columns: Any = None,
    skip_bad: bool = False,
    shard_size: int = 100_000,
    address: str | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    stats: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Classify a catalogue file on Ray into ``out/shard-NNNNN/`` Parquet folders.

    The file is read in shards of ``shard_size`` products (streamed, as the local path reads
    it); each shard runs through :func:`classify_dataset` and is renamed into place only when
    complete, so a rerun after a crash skips the finished shards and redoes only the rest. A
    shard folder that holds other products than the rerun reads there (written with an earlier
    ``limit``, another input or another ``shard_size``) is redone, never skipped.

    Args:
        input_file: a CSV, JSONL or Parquet catalogue.
        out: the output folder.
        model: a saved domain expert folder (or URI).
        columns, skip_bad: as for :func:`~dualexpert.data.iter_catalogue`.
        shard_size: products per shard (the unit of resume).
        address: the Ray cluster (``auto`` for a running one; None starts a local Ray).
        limit: classify only the first ``limit`` products of the file (as the local path's
            ``--limit``).
        progress: called with the number of products in each finished shard.
        stats: a :class:`~dualexpert.data.ReadStats` to fill (the skipped records and why).
        options: passed to :func:`classify_dataset`.

    Returns:
        Totals: ``products`` (classified now), ``already_done`` (in finished shards),
        ``shards``, ``routed``, ``fallback``, ``duplicate_ids`` (repeats of an id already read,
        left out as the local path leaves them out), ``bad_records_skipped``.
    """
    from itertools import chain, islice

    import pyarrow.parquet as pq

    from ..data import ReadStats, iter_catalogue
    from ..journal import chunks, first_of_each_id

    ray = require_ray()
    if "://" not in str(model):
        local_model(model)  # checked before Ray starts
    # what a user can fix is said before Ray starts (seconds, and a screen of its logs)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; with the Ray engine it is a folder")
    stats = ReadStats() if stats is None else stats
    prods = iter_catalogue(input_file, columns, "skip" if skip_bad else "raise", stats=stats)
    first = next(prods, None)  # opens the file: a missing or unreadable one fails here
    if not ray.is_initialized():
        from ..threads import machine_cpus

        local = {} if address else local_ray_options(machine_cpus())
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    out.mkdir(parents=True, exist_ok=True)
    prods = chain([first], prods) if first is not None else prods
    if limit is not None:
        prods = islice(prods, limit)
    totals = {"products": 0, "already_done": 0, "shards": 0, "routed": 0, "fallback": 0}
    totals["duplicate_ids"] = 0

    def repeated(_: str) -> None:
        totals["duplicate_ids"] += 1

    # a repeated id is classified once, as on the local path
    unique = chain.from_iterable(first_of_each_id(prods, lambda p: p.id, repeated))
    for i, shard in enumerate(chunks(unique, shard_size)):
        final = out / f"shard-{i:05d}"
        totals["shards"] += 1
        if final.is_dir():
            if _holds(final, shard):
                totals["already_done"] += len(shard)
                continue
            # written by a run that read other products here (an earlier --limit, another
            # input or shard size): redone, so that no product is skipped unclassified
            log.warning("%s holds other products than this run's shard %d: redoing it", final, i)
            shutil.rmtree(final)
        rows = [p.model_dump(mode="json") for p in shard]
        done = classify_dataset(ray.data.from_items(rows), model, **options)
        tmp = out / f".shard-{i:05d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        # the writer reserves no CPU (so it streams beside stage 1) and runs one task at a time:
        # uncapped, Ray started a process per write task; one writes far more records a second
        # than a large stage-1 pool produces
        done.write_parquet(str(tmp), ray_remote_args={"num_cpus": 0}, concurrency=1)
        os.replace(tmp, final)
        counts = pq.read_table(final, columns=["routed", "fallback"])  # not a second Ray job
        for name in ("routed", "fallback"):
            totals[name] += sum(bool(x) for x in counts.column(name).to_pylist())
        totals["products"] += len(shard)
        if progress is not None:
            progress(len(shard))
    totals["bad_records_skipped"] = stats.skipped
    return totals
