"""Distributed training: the domain-expert trainer run unchanged as 2 CPU processes (torchrun,
gloo), on a tiny catalogue; and the CLI's ``--nproc``."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    from dualexpert.domain import DomainExpert

    logging.basicConfig(level=logging.INFO)  # "resuming from ..." on a rerun

    rows = [json.loads(x) for x in open(sys.argv[1])]
    for r in rows:
        r["category"] = tuple(r["category"].split(" > "))
    expert = DomainExpert(epochs=float(sys.argv[4]), batch_size=4, max_length=16,
                          logging_steps=1, label_augmentation=True, lexical=False, seed=0)
    expert.fit(rows, output_dir=sys.argv[2], progress=False)
    expert.save(sys.argv[3])
    if int(os.environ.get("RANK", "0")) == 0:
        json.dump(expert.train_log, open(sys.argv[3] + ".log.json", "w"))
    """
)


def _catalogue(path: Path) -> Path:
    words = {
        "Toys > Dolls": "fashion doll dress",
        "Toys > Trains": "model railway locomotive",
        "Garden > Tools": "pruning shears spade",
        "Garden > Seeds": "tomato seed packet",
    }
    rows = [
        {"id": f"{c}-{i}", "title": f"{w} {i}", "category": c}
        for c, w in words.items()
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _torchrun(script: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(script), *args]  # fmt: skip


ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def test_two_processes_train_one_model(tmp_path):
    from dualexpert.domain import DomainExpert

    data = _catalogue(tmp_path / "toys.jsonl")
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    model = tmp_path / "model"
    res = subprocess.run(
        _torchrun(script, str(data), str(tmp_path / "ck"), str(model), "6"),
        env=ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    log = json.loads((tmp_path / "model.log.json").read_text())
    losses = [x["loss"] for x in log if "loss" in x]
    assert losses[-1] < losses[0]
    # rows are sharded, not duplicated: each of the 2 processes takes half of every step
    per_epoch = max(x["step"] for x in log) / 6
    # one process alone would take at least 32 / 4 = 8 steps an epoch (more with augmentation)
    assert per_epoch == int(per_epoch) and per_epoch < 8
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    back = DomainExpert.load(model)  # the same format as a single-process run
    assert sorted({c[0].id for c in back.predict_topk(["fashion doll dress 3"], k=1)}) == [
        "Toys > Dolls"
    ]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:  # a zombie (state Z) has ended: it only waits to be reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and any(map(_alive, pids)):
        time.sleep(0.05)
    assert not any(map(_alive, pids)), "a killed worker is still running"


def test_both_processes_killed_then_resumed(tmp_path):
    data = _catalogue(tmp_path / "toys.jsonl")
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    ck, model = tmp_path / "ck", tmp_path / "model"
    cmd = _torchrun(script, str(data), str(ck), str(model), "6")  # a checkpoint each epoch
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and not list(ck.glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.1)
    # torchrun starts each worker in a session of its own: killing torchrun's process group
    # left both workers training on beside the resumed run (and the two runs deadlocked)
    workers = _descendants(proc.pid)
    assert len(workers) >= 2, workers
    for pid in [proc.pid, *workers]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    _wait_gone(workers)
    assert list(ck.glob("checkpoint-*")) and not model.exists()
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    log = json.loads((tmp_path / "model.log.json").read_text())
    assert "resuming from" in res.stderr and "checkpoint-" in res.stderr
    steps = max(x["step"] for x in log)
    assert steps % 6 == 0 and steps // 6 < 8  # all 6 epochs, with the data sharded


def test_cli_nproc(tmp_path, server):
    """`train --nproc 2` with its default synthesis: the parent asks the LLM (a real server on
    loopback) once for the rare leaves, and both ranks train on the same titles."""
    data = _catalogue(tmp_path / "toys.jsonl")  # 8 products a leaf: every leaf is rare
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "dualexpert.cli", "train", str(data), "--out", str(out)]
    cmd += ["--llm", "openai/smollm2", "--api-base", server]
    res = subprocess.run(
        cmd + ["--nproc", "2", "--epochs", "2", "--batch-size", "4"],
        env=ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "dualexpert.json").is_file()
    assert (tmp_path / "m.checkpoints" / "run.json").is_file()
    err = " ".join(res.stderr.split())
    assert err.count('{"leaves": 4,') == 1  # one synthesis, in the parent
    written = [json.loads(line) for line in (tmp_path / "m.synthetic.jsonl").open()]
    assert len(written) == 4
    n = sum(len(r["titles"]) for r in written)
    assert err.count(f"added {n} synthetic products") == 2  # read by each rank
    manifest = json.loads((out / "dualexpert.json").read_text())
    assert manifest["class_counts"] == [8, 8, 8, 8]  # the real products only
    assert manifest["prior_adjustment"] == (1.0 if n else 0.0)


def _all_pairs(folder: Path) -> tuple[Path, Path]:
    """Every query of the relevance fixture against every title (144 pairs, 12 relevant),
    each with a rationale: enough for the default's held-out queries and warm start."""
    import csv

    from relevance_fixtures import PRODUCTS

    rows = [
        (
            f"q{i}-t{j}",
            q,
            t,
            3.0 if i == j else 1.0,
            f"It is a {n}, {'' if i == j else 'not '}a {q}.",
        )
        for i, (q, _, _) in enumerate(PRODUCTS)
        for j, (_, t, n) in enumerate(PRODUCTS)
    ]
    with (folder / "pairs.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "search_term", "product_title", "relevance"])
        w.writerows(r[:4] for r in rows)
    with (folder / "rationales.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": r[0], "rationale": r[4]}) + "\n" for r in rows)
    return folder / "pairs.csv", folder / "rationales.jsonl"


def test_relevance_distillation_under_plain_torchrun(tmp_path):
    """The relevance trainer unchanged under `torchrun -m dualexpert.cli distill`, with its
    defaults (prior, warm start, stack, rationale decoder): both Trainers shard the pairs
    between the 2 processes, the cross-encoder learns, and one process writes the one export,
    which loads in plain CrossEncoder and scores as RelevanceScorer does."""
    import torch
    from scipy.special import expit
    from sentence_transformers import CrossEncoder

    from dualexpert.relevance import load_pairs
    from dualexpert.relevance.scorer import RelevanceScorer

    pairs_csv, rationales = _all_pairs(tmp_path)
    out = tmp_path / "ce"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "dualexpert.cli", "distill", str(pairs_csv), "--out", str(out)]
    cmd += ["--split", "all", "--rationales", str(rationales), "--epochs", "3"]
    cmd += ["--batch-size", "4", "--learning-rate", "1e-4", "--seed", "0"]
    cmd += ["--correction-holdout", "0.5", "--warm-start-pairs", "64"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    said = " ".join(res.stderr.split())  # the CLI's messages go to stderr
    assert "stack: cross-encoder weighed" in said
    assert "recombined unlabelled pairs" in said  # the warm start ran
    held = int(re.search(r"held-out queries \(\d+, (\d+) pairs\)", said).group(1))
    assert (out / "model.safetensors").is_file() and (out / "prior").is_dir()
    # one writer: no second export, no half-written folder beside it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ce")) == [
        "ce",
        "ce.checkpoints",
    ]
    states = sorted((tmp_path / "ce.checkpoints").glob("checkpoint-*/trainer_state.json"))
    state = json.loads(states[-1].read_text())
    # the pairs not held out, 4 a process: half the steps one process would take
    assert 0 < held < 144 and state["global_step"] == 3 * math.ceil((144 - held) / (4 * 2))
    # it learned: on the held-out queries the cross-encoder alone ranks well above chance
    assert float(re.search(r"cross-encoder alone ([\d.]+)\)", said).group(1)) > 0.8
    texts = [(p.query, p.title) for p in load_pairs(pairs_csv)]
    scorer = RelevanceScorer(out)
    plain = CrossEncoder(str(out), device="cpu").predict(
        texts, activation_fn=torch.nn.Identity(), convert_to_numpy=True
    )
    stacked = expit(plain + scorer.prior.decision_function(texts))
    assert abs(stacked - scorer.predict_proba(texts)).max() < 1e-5
