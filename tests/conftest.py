from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALEXPERT_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEMO = ROOT / "dualexpert" / "demo" / "catalogue.csv"


@pytest.fixture(autouse=True)
def _restore_dspy_settings():
    """CLI commands configure DSPy globally (their process ends there); in one pytest process
    that would leak an adapter or LM into the tests that run after them."""
    import dspy

    keys = ("lm", "adapter")
    before = {k: dspy.settings.get(k) for k in keys}
    yield
    if any(dspy.settings.get(k) is not before[k] for k in keys):
        dspy.configure(**before)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture
def demo_catalogue() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def server():
    """A real OpenAI-compatible server on loopback (``llama_cpp.server``) serving SmolLM2 as
    ``smollm2``; yields its ``/v1`` URL."""
    from dualexpert.models import resolve_llm

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", resolve_llm("smollm2")]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    cmd += ["--model_alias", "smollm2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("llama_cpp.server exited")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


def train_demo_model(d: Path) -> dict:
    """A domain expert trained for one epoch on the demo catalogue's training split, saved in
    ``d / "model"``; the held-out products are written to ``d / "held.jsonl"`` unlabelled.
    Returns ``dir``, ``model`` (the folder), ``expert`` and ``held``."""
    import json

    from dualexpert.demo import split_demo
    from dualexpert.domain import DomainExpert

    train, held = split_demo(seed=0)
    expert = DomainExpert(epochs=1, batch_size=16, learning_rate=2e-4, seed=0)
    expert.fit(train, progress=False).save(d / "model")
    with (d / "held.jsonl").open("w") as f:
        for p in held:
            f.write(json.dumps({"id": p.id, "title": p.title, "description": p.description}) + "\n")
    return {"dir": d, "model": d / "model", "expert": expert, "held": held}
