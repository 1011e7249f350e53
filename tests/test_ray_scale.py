"""classify on a real local Ray (started by the test, 2 CPUs): the same predictions as the
single-machine path, a killed worker retried without losing or duplicating a row, one clear
error for a missing model, resume by shards, and worker processes kept for reuse."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from dualexpert.batch import classify_products
from dualexpert.data import iter_catalogue
from dualexpert.pipeline import load_dual_expert

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install .[ray])")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    from dualexpert.scale.ray_data import local_ray_options

    # as the CLI starts its own Ray
    ray.init(include_dashboard=False, log_to_driver=False, **local_ray_options(2))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from _dspy_fakes import tiny_domain_expert

    from dualexpert.demo import split_demo

    d = tmp_path_factory.mktemp("ray")
    tiny_domain_expert(d / "model")
    _, held = split_demo(seed=0)
    data = d / "held.jsonl"
    with data.open("w") as f:
        for p in held:
            f.write(json.dumps({"id": p.id, "title": p.title, "description": p.description}))
            f.write("\n")
    return d, data, held


def _local(d, data, out):
    """The single-machine path with the same settings (nothing reaches the LLM)."""
    program = load_dual_expert(d / "model", threshold=0.0)
    classify_products(program, iter_catalogue(data), out)
    return {r["id"]: r["category"] for r in map(json.loads, out.read_text().splitlines())}


def _ray_records(folder):
    rows = ray.data.read_parquet(str(folder)).take_all()
    return {r["id"]: r["category"] for r in rows}, [r["id"] for r in rows]


def test_same_output_as_the_local_path_and_resume(ray_local, setup, tmp_path):
    from dualexpert.scale import classify_file

    d, data, held = setup
    want = _local(d, data, tmp_path / "local.jsonl")
    out = tmp_path / "ray"
    opts = dict(threshold=0.0, workers=2, batch_size=16)
    totals = classify_file(data, out, d / "model", shard_size=50, **opts)
    assert totals["products"] == len(held) and totals["shards"] == 2
    got, ids = _ray_records(out)
    assert got == want and len(ids) == len(set(ids)) == len(held)
    # a rerun (as after a crash) skips the finished shards
    (out / "shard-00001").rename(tmp_path / "gone")
    again = classify_file(data, out, d / "model", shard_size=50, **opts)
    assert again["already_done"] == 50 and again["products"] == len(held) - 50
    assert _ray_records(out)[0] == want


def test_a_killed_worker_loses_and_duplicates_nothing(ray_local, setup, tmp_path):
    from dualexpert.scale import classify_dataset

    d, data, held = setup
    want = _local(d, data, tmp_path / "local.jsonl")
    rows = [p.model_dump(mode="json") for p in iter_catalogue(data)]
    ds = classify_dataset(
        ray.data.from_items(rows), d / "model", threshold=0.0, workers=2, batch_size=4
    )
    killed = []

    def kill_one_actor():  # a stage-1 actor's process, once it is working
        import subprocess

        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True)
            for line in ps.stdout.splitlines():
                pid, _, args = line.strip().partition(" ")
                if "ray::" in args and "DomainStage" in args and "IDLE" not in args:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.1)

    t = threading.Thread(target=kill_one_actor)
    t.start()
    out = ds.take_all()
    t.join()
    assert killed, "no stage-1 actor was found to kill"
    ids = [r["id"] for r in out]
    assert len(ids) == len(set(ids)) == len(held)  # 0 lost, 0 duplicated
    assert {r["id"]: r["category"] for r in out} == want


def test_a_missing_model_is_one_clear_error(ray_local, setup, tmp_path):
    from dualexpert.scale import classify_dataset

    with pytest.raises(FileNotFoundError, match="not a saved domain expert"):
        classify_dataset(ray.data.from_items([{"title": "x"}]), tmp_path / "nope")
    d, _, _ = setup  # a bad option value is one error too, before any actor starts
    with pytest.raises(ValueError, match="prior_adjustment must be 0 or more"):
        classify_dataset(ray.data.from_items([{"title": "x"}]), d / "model", prior_adjustment=-1)


def test_a_worker_cannot_ask_more_cpus_than_a_node_has(ray_local, setup):
    from dualexpert.scale import classify_dataset

    d, _, _ = setup
    with pytest.raises(ValueError, match="threads=3: .* largest node of this Ray has 2"):
        classify_dataset(ray.data.from_items([{"title": "x"}]), d / "model", threads=3)
    with pytest.raises(ValueError, match="workers must be a whole number"):
        classify_dataset(ray.data.from_items([{"title": "x"}]), d / "model", workers=0)


def test_the_stages_are_built_without_deprecated_ray_arguments(ray_local, setup):
    """``map_batches(concurrency=)`` is deprecated from Ray 2.51: the stages ask for their actor
    pools through ``compute``, so a run does not warn, and keeps working when Ray drops it."""
    import logging

    from dualexpert.scale import classify_dataset

    class Seen(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    d, _, _ = setup
    rows = ray.data.from_items([{"title": "x"}])  # Ray Data sets up its loggers on first use
    seen, ray_data_log = Seen(), logging.getLogger("ray.data")
    ray_data_log.addHandler(seen)
    try:
        ds = classify_dataset(rows, d / "model", workers=2)
        rows.map_batches(lambda b: b, concurrency=1)  # a canary: the check sees Ray's warning
    finally:
        ray_data_log.removeHandler(seen)
    assert [m for m in seen.messages if "deprecated" in m] == [  # the canary's alone
        next(m for m in seen.messages if "``concurrency`` is deprecated" in m)
    ]
    pools = [op for op in _operators(ds) if "MapBatches" in op.name]
    assert [op.name for op in pools] == ["MapBatches(DomainStage)", "MapBatches(GeneralStage)"]
    assert [(op.compute.min_size, op.compute.max_size) for op in pools] == [(2, 2), (1, 1)]


def _operators(ds):
    """The logical operators of ``ds``'s plan, first to last."""
    op, ops = ds._logical_plan.dag, []
    while op is not None:
        ops.append(op)
        op = op.input_dependencies[0] if op.input_dependencies else None
    return ops[::-1]


def test_limit_skipped_records_and_threads_per_worker_as_on_the_local_path(
    ray_local, setup, tmp_path
):
    """``--limit``, ``--skip-bad`` and ``--threads`` mean on Ray what they mean locally: the
    first N products (bad records skipped and counted, a repeated id classified once), and one
    worker that reserves 2 CPUs and runs its encoder on 2 threads."""
    from dualexpert.data import ReadStats
    from dualexpert.scale import classify_file

    d, data, held = setup
    lines = data.read_text().splitlines()
    bad = tmp_path / "with-bad.jsonl"  # the 3rd and 6th records have no title
    rows = [json.loads(x) for x in lines]
    for i in (2, 5):
        rows[i].pop("title")
    rows.insert(8, dict(rows[0]))  # and the first one's id comes again (left out, counted)
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = _local(d, data, tmp_path / "local.jsonl")
    stats = ReadStats()
    free: list[float] = []  # the CPUs Ray has free, seen while the job runs
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            free.append(ray.available_resources().get("CPU", 0.0))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        totals = classify_file(
            bad, tmp_path / "ray", d / "model", skip_bad=True, limit=20, stats=stats,
            threshold=0.0, workers=1, threads=2, batch_size=8,
        )  # fmt: skip
    finally:
        done.set()
        watcher.join()
    assert min(free) == 0.0  # the one worker held both CPUs of this Ray
    assert totals["products"] == 19 and totals["duplicate_ids"] == 1
    assert totals["bad_records_skipped"] == 2
    assert stats.skipped == 2 and "title" in str(stats.errors[0])
    got, ids = _ray_records(tmp_path / "ray")
    kept = list(dict.fromkeys(r["id"] for r in rows if "title" in r))[:19]
    assert sorted(ids) == sorted(kept)
    assert got == {i: want[i] for i in kept}
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        classify_file(data, tmp_path / "neg", d / "model", limit=-1)


def test_what_a_user_can_fix_is_said_before_ray_starts(setup, tmp_path, monkeypatch):
    """A missing input, a bad first record or an --out that is a file: one clear error, and no
    Ray started for it (seconds, and a screen of its logs)."""
    from dualexpert.data import RecordError
    from dualexpert.scale import classify_file

    def no_start(*args, **kwargs):
        raise AssertionError("Ray was started before the input was checked")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_start)
    d, data, _ = setup
    with pytest.raises(FileNotFoundError, match="nope.jsonl does not exist"):
        classify_file(tmp_path / "nope.jsonl", tmp_path / "out", d / "model")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "description": "no title"}\n')
    with pytest.raises(RecordError, match="title"):
        classify_file(bad, tmp_path / "out", d / "model")
    (tmp_path / "file.jsonl").write_text("")
    with pytest.raises(FileExistsError, match="is a file; with the Ray engine it is a folder"):
        classify_file(data, tmp_path / "file.jsonl", d / "model")


@ray.remote(num_cpus=0)
def _worker_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_the_local_ray_reuses_idle_worker_processes(ray_local):
    """The Ray that ``classify`` starts keeps idle worker processes for the next tasks. With
    Ray's default (one idle process per CPU, the others killed after a second), 2 of these 4
    processes were left after 3 s idle, and each later write task paid a new process's start."""
    first = set(ray.get([_worker_pid.remote(1.0) for _ in range(4)]))
    time.sleep(3)
    again = set(ray.get([_worker_pid.remote(1.0) for _ in range(4)]))
    assert len(first) == 4 and again == first


def test_the_local_ray_keeps_at_least_rays_default_on_a_large_node():
    from dualexpert.scale.ray_data import local_ray_options

    # Ray's default keeps one idle process per CPU: the option only ever adds to it
    for cpus in (1, 2, 64):
        opts = local_ray_options(cpus)
        assert opts["num_cpus"] == cpus
        assert opts["_system_config"]["num_workers_soft_limit"] > cpus


def test_cli_engine_ray(setup, tmp_path):
    import subprocess
    import sys

    d, data, held = setup
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "dualexpert.cli", "classify", str(d / "model"), str(data)]
    cmd += ["--out", str(out), "--engine", "ray", "--workers", "2", "--threshold", "0"]
    cmd += ["--llm", "openai/unused", "--api-base", "http://127.0.0.1:9/v1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd + ["--limit", "30"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    totals = json.loads(res.stdout.strip().splitlines()[-1])
    assert totals["products"] == 30 < len(held)  # --limit, as on the local path
    assert len(ray.data.read_parquet(str(out)).take_all()) == 30
    # the whole file into the same folder: the shard written under --limit is redone, not
    # taken as finished (it would have left the other products unclassified)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    totals = json.loads(res.stdout.strip().splitlines()[-1])
    assert totals["products"] == len(held) and totals["already_done"] == 0
    ids = [r["id"] for r in ray.data.read_parquet(str(out)).take_all()]
    assert sorted(ids) == sorted(p.id for p in held)
    missing = subprocess.run(
        cmd[:4] + [str(tmp_path / "nope")] + cmd[5:], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "not a saved domain expert" in " ".join(missing.stderr.split())


def test_routed_rows_reach_the_llm_stage_as_on_the_local_path(ray_local, setup, tmp_path):
    """Stage 2 on Ray (an actor without a CPU of its own, passing confident batches through)
    gives the same answers as the local path, with a real OpenAI-compatible server."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fake_llm_server import FakeLLM

    from dualexpert.lm import configure_lm
    from dualexpert.scale import classify_file

    d, data, held = setup
    program = load_dual_expert(d / "model")
    top = sorted(program.candidates_batch(held)[i][0].probability for i in range(len(held)))
    threshold = top[len(top) // 2]  # about half the products go to the LLM
    srv = FakeLLM(delay=0.0).start()
    try:
        configure_lm("openai/fake", api_base=srv.url)
        local = tmp_path / "local.jsonl"
        classify_products(
            load_dual_expert(d / "model", threshold=threshold), iter_catalogue(data), local
        )
        out = tmp_path / "ray"
        totals = classify_file(
            data, out, d / "model", threshold=threshold, workers=2, batch_size=8,
            llm="openai/fake", api_base=srv.url, llm_concurrency=4,
        )  # fmt: skip
    finally:
        srv.stop()
    keys = ("category", "routed", "decision", "fallback")
    want = {
        r["id"]: tuple(r[k] for k in keys) for r in map(json.loads, local.read_text().splitlines())
    }
    got = {r["id"]: tuple(r[k] for k in keys) for r in ray.data.read_parquet(str(out)).take_all()}
    routed = sum(v[1] for v in want.values())
    assert 0 < routed < len(held) and totals["routed"] == routed
    assert not any(v[3] for v in want.values())  # every routed product got the LLM's answer
    assert got == want


def test_a_row_carries_every_product_field_into_the_actors():
    from dualexpert.data import Product
    from dualexpert.scale.ray_data import _product_fields

    p = Product(id="7", title="Hose", description="Green", context="Garden", category=("G", "H"))
    assert Product(**_product_fields(p.model_dump(mode="json"))) == p


def test_the_driver_resolves_auto_for_the_llm_the_job_names():
    """Stage-1 actors have no LLM configured: "auto" is resolved in the driver, so both stages
    route by the same strategy's threshold (channel: 0.8 with the bundled LLM)."""
    from dualexpert.scale.ray_data import driver_strategy

    assert driver_strategy("auto", None, None, None) == "channel"
    assert driver_strategy("auto", None, "smollm2", None) == "channel"
    assert driver_strategy("auto", None, "openai/gpt-4o-mini", None) == "zero_shot"
    assert driver_strategy("auto", None, "qwen-1.5b", "http://127.0.0.1:8000/v1") == "zero_shot"
    assert driver_strategy("rank", None, None, None) == "rank"
    assert driver_strategy("auto", "compiled.json", None, None) == "auto"  # the program's own
