"""Scale-out (issue 16), side by side in one run on this machine:

1. ``classify`` of N products, nothing routed: the local path against ``--engine ray`` with 1
   and 2 workers (wall time with start-up, products/s, peak RSS of the largest stage-1 worker).
   ``--products generated`` (the default) are five-word titles, so the encoder's work is the
   least it can be and Ray's fixed costs weigh most; ``--products mwpd`` are real offers (MWPD
   train + validation name and description, repeated up to N with new ids), the text a
   catalogue has; ``--products bigbasket`` are real titles alone (BigBasket), short text again.
2. Domain-expert training with 1 and 2 DDP processes (torchrun, gloo): steps/s and samples/s
   as the Hugging Face Trainer reports them.
3. ``pairs``: the bar's comparison alone (the local path, then Ray with 2 workers, right after
   each other), ``--repeats`` times, so that a machine whose speed drifts moves both runs of a
   pair alike.
4. ``floor``: what Ray and Ray Data cost alone on this machine. The same job shape as
   ``--engine ray`` with 2 workers (a local Ray started in the process, N rows streamed in, two
   one-CPU actors, a zero-CPU actor stage, a one-task-at-a-time Parquet writer), but the
   stage-1 actors only write records of the classify output's size: no model is loaded. Its wall
   time, against the local path's whole classify run, is the least the Ray path can take here.

Every run is a real subprocess; ``--runtime`` says where classify runs the encoder (``onnx``,
the default, exports the model first; ``torch``). Prints a table and writes JSON.

    python benchmarks/scale_out.py --n 20000 --train-n 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from classify_scale import NO_LLM, RUNTIME, SHARED, parquet_file, small_model  # noqa: E402
from throughput import cpu_name  # noqa: E402

CLI = [sys.executable, "-m", "dualexpert.cli"]
OUT = ROOT / "benchmarks" / "results" / "scale_out.json"
FIT = textwrap.dedent(
    """
    import json, os, sys
    from dualexpert.data import load_catalogue
    from dualexpert.domain import DomainExpert

    prods = load_catalogue(sys.argv[1], "mwpd").products[: int(sys.argv[3])]
    e = DomainExpert(epochs=1.0, lexical=False, logging_steps=10, seed=0)
    e.fit(prods, output_dir=sys.argv[2], progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        json.dump(e.train_log, open(sys.argv[2] + ".log.json", "w"))
    """
)

FLOOR = textwrap.dedent(
    """
    import json, shutil, sys
    import pyarrow as pa, pyarrow.parquet as pq, ray, ray.data
    from dualexpert.scale.ray_data import local_ray_options

    class Stage1:  # a record of the size and shape classify writes (~1.3 KB); no model
        def __call__(self, b):
            ids, titles = b.column("id").to_pylist(), b.column("title").to_pylist()
            paths = [["Home & Garden", "Kitchen & Dining", f"Cookware {j}"] for j in range(5)]
            cands = [{"id": " > ".join(q), "path": q, "probability": 0.19} for q in paths]
            rec = [json.dumps({
                "id": i, "title": t, "category": cands[0]["id"], "path": paths[0],
                "routed": False, "route_reason": "domain expert confident: p=0.660 >= 0.0",
                "decision": "domain", "fallback": False, "fallback_reason": "", "reason": "",
                "ranking": [c["id"] for c in cands], "candidates": cands,
                "llm_logprobs": None, "seconds": 0.0015,
                "usage": {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0},
            }) for i, t in zip(ids, titles)]
            n = len(ids)
            return pa.table({"id": ids, "category": [cands[0]["id"]] * n,
                             "routed": [False] * n, "record": rec, "job": [""] * n})

    class Stage2:
        def __call__(self, b):
            return b.drop_columns(["job"])

    ray.init(include_dashboard=False, log_to_driver=False, **local_ray_options(2))
    rows = pq.read_table(sys.argv[1]).to_pylist()
    ds = ray.data.from_items(rows)
    ds = ds.map_batches(Stage1, batch_size=256, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1)
    ds = ds.map_batches(Stage2, batch_size=256, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0)
    shutil.rmtree(sys.argv[2], ignore_errors=True)
    ds.write_parquet(sys.argv[2], ray_remote_args={"num_cpus": 0}, concurrency=1)
    assert pq.read_table(sys.argv[2]).num_rows == len(rows)
    """
)


class PeakRSS(threading.Thread):
    """The largest peak resident set (``VmHWM``) of any process whose command line holds
    ``marker``. Read from ``/proc`` once a second: the kernel keeps each process's peak, so a
    slow poll misses nothing, and spawning ``ps`` four times a second cost the measured run a
    few percent of a core."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker, self.peak_mb, self.stop = marker, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for proc in Path("/proc").iterdir():
                try:
                    if self.marker not in (proc / "cmdline").read_text(errors="replace"):
                        continue
                    for line in (proc / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
                except (OSError, ValueError):
                    continue  # not a process, or it ended
            self.stop.wait(1.0)


def timed(cmd: list[str], env: dict, marker: str | None = None) -> tuple[float, float]:
    watch = PeakRSS(marker) if marker else None
    if watch:
        watch.start()
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if watch:
        watch.stop.set()
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return wall, watch.peak_mb if watch else 0.0


def real_parquet(work: Path, n: int, products: str) -> Path:
    """N real products (id, title, description): MWPD train + validation offers (name and
    description) or BigBasket's titles (no description), repeated with new ids until N."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = work / f"{products}-{n}.parquet"
    if out.exists():
        return out
    if products == "mwpd":
        src = [SHARED / "mwpd" / f for f in ("train.jsonl", "validation.jsonl")]
    else:
        src = [SHARED / "bigbasket" / "products.csv"]
    if not all(f.exists() for f in src):
        raise SystemExit(f"shared data not found at {src[0].parent}")
    if products == "mwpd":
        lines = [ln for f in src for ln in f.read_text(encoding="utf-8").splitlines()]
        rows = [(r["ID"], r["Name"], r.get("Description") or "") for r in map(json.loads, lines)]
    else:
        with src[0].open(encoding="utf-8", newline="") as f:
            # one BigBasket row has no title: classify would stop there, naming it
            rows = [(r["index"], r["product"], "") for r in csv.DictReader(f) if r["product"]]
    pick = [rows[i % len(rows)] for i in range(n)]
    columns = {
        "id": [f"{i}-{r[0]}" for i, r in enumerate(pick)],
        "title": [r[1] for r in pick],
        "description": [r[2] for r in pick],
    }
    pq.write_table(pa.table(columns), out)
    return out


def classify_command(work: Path, n: int, products: str) -> list[str]:
    """``dualexpert classify`` of N ``products`` with the small model, nothing routed, without
    its ``--out`` and engine options."""
    model = small_model(work, tiny=False)
    data = parquet_file(work, n) if products == "generated" else real_parquet(work, n, products)
    return [*CLI, "classify", str(model), str(data), *NO_LLM, "--chunk-size", "256", *RUNTIME]


def classify_runs(work: Path, n: int, env: dict, products: str = "generated") -> dict:
    base = classify_command(work, n, products)
    rows = {}
    out = work / f"local-{n}.jsonl"
    out.unlink(missing_ok=True)
    wall, _ = timed([*base, "--out", str(out), "--threads", "2"], env)
    rows["local (2 threads)"] = {"seconds": wall, "products_s": n / wall}
    for w in (1, 2):
        folder = work / f"ray-{n}-w{w}"
        subprocess.run(["rm", "-rf", str(folder)])
        wall, peak = timed(
            [*base, "--out", str(folder), "--engine", "ray", "--workers", str(w)],
            env,
            marker="DomainStage",
        )
        rows[f"ray, {w} worker(s)"] = {
            "seconds": wall,
            "products_s": n / wall,
            "peak_worker_rss_mb": peak,
        }
        print(f"  ray {w} worker(s): {wall:.0f} s", flush=True)
    local = rows["local (2 threads)"]["seconds"]
    for r in rows.values():
        r["vs_local"] = r["seconds"] / local
    return rows


def encoder_seconds(out: Path) -> float:
    """The stage-1 seconds in a classify output, summed over its records (each record carries
    its share of its batch's domain-expert pass): the time spent encoding, whatever the engine.
    The local path's is wall time at 2 threads; Ray's, summed over its one-thread actors."""
    if out.is_dir():
        import pyarrow.parquet as pq

        records = pq.read_table(out, columns=["record"]).column("record").to_pylist()
    else:
        records = out.read_text(encoding="utf-8").splitlines()
    return sum(json.loads(r)["seconds"] for r in records)


def paired_runs(work: Path, n: int, env: dict, products: str, repeats: int) -> list[dict]:
    """The bar's comparison alone, in pairs: the local path, then Ray with 2 workers, right
    after each other, ``repeats`` times. A machine whose speed drifts over the minutes the
    three-row table takes moves both runs of a pair alike, so each pair's ratio is fairer."""
    base = classify_command(work, n, products)
    out, folder = work / f"pair-local-{n}.jsonl", work / f"pair-ray-{n}"
    pairs = []
    for _ in range(repeats):
        out.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(folder)])
        local, _ = timed([*base, "--out", str(out), "--threads", "2"], env)
        ray, _ = timed([*base, "--out", str(folder), "--engine", "ray", "--workers", "2"], env)
        enc_local, enc_ray = encoder_seconds(out), encoder_seconds(folder / "shard-00000") / 2
        pairs.append({
            "local_s": local, "ray_2_workers_s": ray, "vs_local": ray / local,
            "local_encoder_s": enc_local, "ray_encoder_s_per_worker": enc_ray,
            "local_rest_s": local - enc_local, "ray_rest_s": ray - enc_ray,
        })  # fmt: skip
        print(f"  pair: local {local:.0f} s (encoder {enc_local:.0f} s), Ray 2 workers {ray:.0f} s "
              f"(encoder {enc_ray:.0f} s a worker) ({ray / local:.2f}x)", flush=True)  # fmt: skip
    return pairs


def floor_runs(work: Path, n: int, env: dict, runs: int = 3) -> dict:
    data = parquet_file(work, n)
    script = work / "floor.py"
    script.write_text(FLOOR)
    walls = []
    for _ in range(runs):
        wall, _ = timed([sys.executable, str(script), str(data), str(work / "floor-out")], env)
        walls.append(wall)
        print(f"  ray floor (no model): {wall:.1f} s", flush=True)
    return {"n": n, "seconds": walls}


def ddp_runs(work: Path, train_n: int, env: dict) -> dict:
    data = ROOT.parent / "shared" / "data" / "mwpd" / "train.jsonl"
    if not data.exists():
        return {"skipped": f"{data} is absent"}
    script = work / "fit.py"
    script.write_text(FIT)
    rows = {}
    for nproc in (1, 2):
        ck = work / f"ddp-{nproc}"
        subprocess.run(["rm", "-rf", str(ck), f"{ck}.log.json"])
        run = [sys.executable, str(script)] if nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script),
        ]  # fmt: skip
        threads = str(2 // nproc)
        cmd = [*run, str(data), str(ck), str(train_n)]
        wall, _ = timed(cmd, dict(env, OMP_NUM_THREADS=threads))
        final = [x for x in json.loads(Path(f"{ck}.log.json").read_text()) if "train_runtime" in x]
        rows[f"{nproc} process(es) x {threads} thread(s)"] = {
            "wall_seconds": wall,
            "train_seconds": final[-1]["train_runtime"],
            "steps_s": final[-1]["train_steps_per_second"],
            "samples_s": final[-1]["train_samples_per_second"],
        }
        print(f"  DDP {nproc}: {final[-1]['train_runtime']:.0f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--train-n", type=int, default=2_000)
    ap.add_argument("--parts", default="classify,ddp")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        default="onnx",
        help="where classify runs the encoder (onnx: the model is exported first)",
    )
    ap.add_argument(
        "--products",
        choices=("generated", "mwpd", "bigbasket"),
        default="generated",
        help="what classify reads: five-word generated titles, real MWPD offers (name and "
        "description) or real BigBasket titles",
    )
    ap.add_argument("--repeats", type=int, default=3, help="pairs for --parts pairs")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    RUNTIME[1] = args.runtime
    work = args.work or Path(tempfile.mkdtemp(prefix="scale-out-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "classify" in args.parts:
        rows = classify_runs(work, args.n, env, args.products)
        res["classify"] = {"n": args.n, "products": args.products, "rows": rows}
    if "pairs" in args.parts:
        runs = paired_runs(work, args.n, env, args.products, args.repeats)
        res["pairs"] = {"n": args.n, "products": args.products, "runs": runs}
    if "floor" in args.parts:
        res["floor"] = floor_runs(work, args.n, env)
    if "ddp" in args.parts:
        res["ddp"] = {"n": args.train_n, "rows": ddp_runs(work, args.train_n, env)}
    res["meta"] = {
        "date": str(date.today()),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {platform.machine()}",
        "command": " ".join(sys.argv),
        "runtime": args.runtime,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    if "classify" in res:
        print(f"\n| classify, {res['classify']['n']:,} {res['classify'].get('products', '')} "
              "products | seconds | products/s | "
              "vs local | peak worker RSS |\n|---|---|---|---|---|")  # fmt: skip
        for name, r in res["classify"]["rows"].items():
            peak = f"{r['peak_worker_rss_mb']:.0f} MB" if r.get("peak_worker_rss_mb") else ""
            print(f"| {name} | {r['seconds']:.0f} | {r['products_s']:.0f} | "
                  f"{r['vs_local']:.2f}x | {peak} |")  # fmt: skip
    if "pairs" in res:
        print(f"\n| {res['pairs']['n']:,} {res['pairs']['products']} products, in pairs | "
              "local s (encoder) | Ray, 2 workers s (encoder a worker) | vs local | "
              "outside the encoder: local / Ray s |\n|---|---|---|---|---|")  # fmt: skip
        for i, r in enumerate(res["pairs"]["runs"], 1):
            enc = "local_encoder_s" in r
            lo = f" ({r['local_encoder_s']:.0f})" if enc else ""
            ra = f" ({r['ray_encoder_s_per_worker']:.0f})" if enc else ""
            rest = f"{r['local_rest_s']:.0f} / {r['ray_rest_s']:.0f}" if enc else ""
            print(f"| pair {i} | {r['local_s']:.0f}{lo} | {r['ray_2_workers_s']:.0f}{ra} | "
                  f"{r['vs_local']:.2f}x | {rest} |")  # fmt: skip
    if "floor" in res:
        local = res.get("classify", {}).get("rows", {}).get("local (2 threads)", {})
        for w in res["floor"]["seconds"]:
            vs = f" ({w / local['seconds']:.2f}x the local classify)" if local else ""
            print(f"Ray + Ray Data alone, {res['floor']['n']:,} rows, no model: {w:.1f} s{vs}")
    if "ddp" in res and "rows" in res["ddp"] and "skipped" not in res["ddp"]["rows"]:
        print(f"\n| DDP training, {res['ddp']['n']:,} MWPD products, 1 epoch | train s | "
              "steps/s | samples/s |\n|---|---|---|---|")  # fmt: skip
        for name, r in res["ddp"]["rows"].items():
            print(f"| {name} | {r['train_seconds']:.0f} | {r['steps_s']:.2f} | "
                  f"{r['samples_s']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
