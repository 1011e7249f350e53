"""Whole-catalogue classification at scale (issue 15's bars), side by side in one run.

1. Nothing routed: ``dualexpert classify`` against ``dualexpert predict`` (products/s), same
   model and file.
2. Every one of N products routed to a fake OpenAI-compatible server that waits 300 ms:
   ``--concurrency 16`` against ``--concurrency 1`` (wall time), and identical outputs.
3. Peak RSS of ``classify`` (nothing routed) on generated Parquet catalogues of 100,000 and
   1,000,000 products, with a tiny encoder so the run takes minutes.

Each run is a real CLI subprocess. ``--runtime onnx`` (the default) exports the models first
(``dualexpert export-onnx``) and runs every command on ONNX Runtime; ``--runtime torch`` runs
them on torch. Prints a table and writes JSON.

    python benchmarks/classify_scale.py --mwpd-n 1000 --routed-n 200 --rss-sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fake_llm_server import FakeLLM  # noqa: E402

SHARED = Path(os.environ.get("DUALEXPERT_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLI = [sys.executable, "-m", "dualexpert.cli"]
OUT = ROOT / "benchmarks" / "results" / "classify_scale.json"
#: classify options that route nothing (the LLM is configured but never called)
NO_LLM = ["--threshold", "0", "--llm", "openai/unused", "--api-base", "http://127.0.0.1:9/v1"]
RUNTIME = ["--runtime", "onnx"]  # set from --runtime in main()


def run(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the child, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    res = subprocess.run(CLI + args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, res.stdout


def peak_rss_of(args: list[str], env: dict) -> tuple[float, float]:
    """Run under /usr/bin/time-like accounting: a fresh process per measurement (RUSAGE_CHILDREN
    keeps the maximum over all children, so each measurement runs in its own shell)."""
    code = (
        "import resource, subprocess, sys, time; t0 = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:]); "
        "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(r.returncode)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, *CLI, *args],
        capture_output=True,
        text=True,
        env=env,
    )
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stderr[-3000:]}")
    wall, kb = res.stdout.strip().splitlines()[-1].split()
    return float(wall), int(kb) / 1024


def small_model(work: Path, tiny: bool) -> Path:
    """A domain expert trained for one epoch on the shipped demo catalogue; ``tiny`` uses a
    2-layer, 64-wide encoder with MiniLM's tokenizer (for the million-product run)."""
    from dualexpert.demo import split_demo
    from dualexpert.domain import DomainExpert

    folder = work / ("tiny-model" if tiny else "small-model")
    if folder.exists():
        return exported(folder)
    encoder = "minilm"
    if tiny:
        from transformers import AutoTokenizer, BertConfig, BertModel

        from dualexpert.models import resolve_encoder

        enc = work / "tiny-encoder"
        cfg = BertConfig(
            vocab_size=30522,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
        )
        BertModel(cfg).save_pretrained(enc)
        AutoTokenizer.from_pretrained(resolve_encoder("minilm")).save_pretrained(enc)
        encoder = str(enc)
    train, _ = split_demo(seed=0)
    # the tiny model measures streaming memory: no lexical expert (its n-gram features would
    # set the pace of a million products)
    expert = DomainExpert(
        encoder=encoder, epochs=1, batch_size=16, learning_rate=2e-4, seed=0, lexical=not tiny
    )
    expert.fit(train, progress=False).save(folder)
    return exported(folder)


def exported(folder: Path) -> Path:
    """``folder``, with an ONNX export when the commands run on ONNX Runtime."""
    if RUNTIME[1] == "onnx" and not (folder / "onnx" / "export.json").is_file():
        run(["export-onnx", str(folder)])
    return folder


def mwpd_file(work: Path, n: int) -> Path:
    src = SHARED / "mwpd" / "validation.jsonl"
    if not src.exists():
        raise SystemExit(f"shared data not found at {src}")
    out = work / f"mwpd-{n}.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()[:n]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def parquet_file(work: Path, n: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = work / f"gen-{n}.parquet"
    if out.exists():
        return out
    words = ["steel", "blue", "cotton", "shirt", "lamp", "garden", "hose", "charger", "usb", "oak"]
    with pq.ParquetWriter(out, pa.schema([("id", pa.string()), ("title", pa.string())])) as w:
        for start in range(0, n, 100_000):
            ids = [str(i) for i in range(start, min(n, start + 100_000))]
            titles = [
                " ".join(words[(i * k) % len(words)] for k in (1, 3, 7, 11)) + f" {i}"
                for i in range(start, start + len(ids))
            ]
            w.write_table(pa.table({"id": ids, "title": titles}))
    return out


def bar1(work: Path, n: int, env: dict) -> dict:
    model = small_model(work, tiny=False)
    data = mwpd_file(work, n)
    common = ["--columns", "mwpd", "--threads", "1"]
    for name in ("p.jsonl", "c.jsonl"):  # both commands resume: a left-over output is no run
        (work / name).unlink(missing_ok=True)
    t_pred, _, _ = run(
        [
            "predict",
            str(model),
            str(data),
            "--out",
            str(work / "p.jsonl"),
            "--k",
            "5",
            *common,
            *RUNTIME,
        ],  # fmt: skip
        env,
    )
    t_cls, _, _ = run(
        [
            "classify",
            str(model),
            str(data),
            "--out",
            str(work / "c.jsonl"),
            *NO_LLM,
            *common,
            *RUNTIME,
        ],
        env,
    )
    return {
        "n": n,
        "predict_products_s": n / t_pred,
        "classify_products_s": n / t_cls,
        "ratio": t_pred / t_cls,
        "bar": ">= 0.9",
    }


def bar2(work: Path, n: int, env: dict) -> dict:
    model = small_model(work, tiny=False)
    data = mwpd_file(work, n)
    srv = FakeLLM(delay=0.3).start()
    out = {}
    try:
        for c in (1, 16):
            f = work / f"routed-c{c}.jsonl"
            f.unlink(missing_ok=True)
            # a fresh DSPy cache per run: a cache hit is not an LLM call
            cache = Path(tempfile.mkdtemp(prefix=f"dspy-cache-c{c}-", dir=work))
            env = dict(env, DSPY_CACHEDIR=str(cache))
            wall, _, stdout = run(
                [
                    "classify",
                    str(model),
                    str(data),
                    "--out",
                    str(f),
                    "--threshold",
                    "1.01",
                    "--llm",
                    "openai/fake",
                    "--api-base",
                    srv.url,
                    "--concurrency",
                    str(c),
                    "--columns",
                    "mwpd",
                    "--threads",
                    "1",
                    *RUNTIME,
                ],
                env,
            )
            totals = json.loads(stdout.strip().splitlines()[-1])
            recs = [json.loads(x) for x in f.read_text().splitlines()]
            out[c] = (wall, totals, [(r["id"], r["category"], r["ranking"]) for r in recs])
    finally:
        srv.stop()
    return {
        "n": n,
        "seconds_c1": out[1][0],
        "seconds_c16": out[16][0],
        "speedup": out[1][0] / out[16][0],
        "loop_seconds_c1": out[1][1]["seconds"],
        "loop_seconds_c16": out[16][1]["seconds"],
        "loop_speedup": out[1][1]["seconds"] / out[16][1]["seconds"],
        "identical_outputs": out[1][2] == out[16][2],
        "routed": out[16][1]["routed"],
        "llm_calls": out[16][1]["llm_calls"],
        "bar": ">= 10x, identical",
    }


def bar3(work: Path, sizes: list[int], env: dict) -> dict:
    model = small_model(work, tiny=True)
    rows = {}
    for n in sizes:
        data = parquet_file(work, n)
        f = work / f"rss-{n}.jsonl"
        f.unlink(missing_ok=True)
        wall, mb = peak_rss_of(
            [
                "classify",
                str(model),
                str(data),
                "--out",
                str(f),
                *NO_LLM,
                "--chunk-size",
                "256",
                *RUNTIME,
            ],
            env,
        )
        rows[n] = {"seconds": wall, "peak_rss_mb": mb, "products_s": n / wall}
        print(f"  {n:,} products: {wall:.0f} s, peak RSS {mb:.0f} MB", flush=True)
    return {"sizes": rows, "bar": "< 1536 MB, largest within 10% of smallest"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mwpd-n", type=int, default=1000)
    ap.add_argument("--routed-n", type=int, default=200)
    ap.add_argument("--rss-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--bars", default="1,2,3")
    ap.add_argument("--work", type=Path, default=None, help="keep models and files here")
    ap.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    RUNTIME[1] = args.runtime
    work = args.work or Path(tempfile.mkdtemp(prefix="classify-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    res: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    bars = args.bars.split(",")
    if "1" in bars:
        res["bar1_nothing_routed"] = bar1(work, args.mwpd_n, env)
    if "2" in bars:
        res["bar2_concurrency"] = bar2(work, args.routed_n, env)
    if "3" in bars:
        res["bar3_memory"] = bar3(work, args.rss_sizes, env)
    res["meta"] = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "runtime": args.runtime,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print("| bar | measured | target |\n|---|---|---|")
    if "bar1_nothing_routed" in res:
        b = res["bar1_nothing_routed"]
        print(
            f"| 1. classify vs predict, nothing routed ({b['n']} MWPD) | "
            f"{b['classify_products_s']:.0f} vs {b['predict_products_s']:.0f} products/s "
            f"= {b['ratio']:.2f}x | >= 0.9x |"
        )
    if "bar2_concurrency" in res:
        b = res["bar2_concurrency"]
        print(
            f"| 2. {b['n']} routed, 300 ms server: concurrency 16 vs 1, whole command | "
            f"{b['seconds_c16']:.1f} s vs {b['seconds_c1']:.1f} s = {b['speedup']:.1f}x, "
            f"identical: {b['identical_outputs']} | >= 10x, identical |"
        )
        print(
            f"| 2'. the same, classification loop only (start-up and model load excluded) | "
            f"{b['loop_seconds_c16']:.1f} s vs {b['loop_seconds_c1']:.1f} s = "
            f"{b['loop_speedup']:.1f}x | |"
        )
    if "bar3_memory" in res:
        for n, r in res["bar3_memory"]["sizes"].items():
            print(
                f"| 3. peak RSS, {int(n):,} products (tiny encoder) | {r['peak_rss_mb']:.0f} MB, "
                f"{r['products_s']:.0f} products/s | < 1536 MB, within 10% |"
            )


if __name__ == "__main__":
    main()
