"""Tokens/s of the local LLM with the installed llama.cpp build (prompt and decode).

Runs through the same child process as the library (``LLMProcess``), so it measures what a
user gets. Prints a table and writes JSON to ``benchmarks/results/llm_speed/<tag>.json``.

    python benchmarks/llm_speed.py --tag portable
    PYTHONPATH=/tmp/llama-native python benchmarks/llm_speed.py --tag native   # another build
    python benchmarks/llm_speed.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import cpu_name  # noqa: E402

from dualexpert.llm_process import LLMProcess  # noqa: E402
from dualexpert.models import resolve_llm  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "llm_speed"
PROMPT = (
    "You categorise products for an online shop. Read the product and explain in a few "
    "sentences which category of the list fits it best and why the others do not. "
) * 6


def system_info() -> str:
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())",
        ],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip()


def measure(model: str, threads: int, repeats: int, n_decode: int) -> dict:
    proc = LLMProcess(
        {
            "model_path": resolve_llm(model),
            "n_ctx": 2048,
            "n_threads": threads,
            "n_batch": 512,
            "seed": 0,
        },
        timeout=600,
    )
    prompt_rates, decode_rates = [], []
    try:
        proc.request("ping")  # load and warm up
        for i in range(repeats):
            proc.request("reset")  # an empty KV cache: the whole prompt is processed
            msgs = [{"role": "user", "content": f"{i} {PROMPT}"}]
            t0 = time.perf_counter()
            one = proc.request("chat", messages=msgs, kwargs={"max_tokens": 1, "temperature": 0})
            t_prompt = time.perf_counter() - t0
            n_prompt = one["usage"]["prompt_tokens"]
            proc.request("reset")
            t0 = time.perf_counter()
            out = proc.request(
                "chat", messages=msgs, kwargs={"max_tokens": n_decode, "temperature": 0}
            )
            t_all = time.perf_counter() - t0
            n_out = out["usage"]["completion_tokens"]
            prompt_rates.append(n_prompt / t_prompt)
            decode_rates.append((n_out - 1) / max(t_all - t_prompt, 1e-6))
    finally:
        proc.stop()
    return {
        "prompt_tokens": n_prompt,
        "prompt_tok_s": statistics.median(prompt_rates),
        "prompt_tok_s_runs": prompt_rates,
        "decode_tok_s": statistics.median(decode_rates),
        "decode_tok_s_runs": decode_rates,
    }


def print_table() -> None:
    print("| build | CPU | threads | prompt tok/s | decode tok/s | date |")
    print("|---|---|---|---|---|---|")
    for f in sorted(OUT.glob("*.json")):
        r = json.loads(f.read_text())
        print(
            f"| {r['tag']} | {r['cpu']} | {r['threads']} | {r['prompt_tok_s']:.1f} | "
            f"{r['decode_tok_s']:.1f} | {r['date']} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tag", default="portable")
    ap.add_argument("--model", default="qwen-1.5b")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if not args.table:
        r = measure(args.model, args.threads, args.repeats, args.decode)
        r.update(
            tag=args.tag,
            model=args.model,
            threads=args.threads,
            cpu=cpu_name(),
            system_info=system_info(),
            date=str(date.today()),
            command=" ".join(sys.argv),
        )
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{args.tag}.json").write_text(json.dumps(r, indent=1))
    print_table()


if __name__ == "__main__":
    main()
