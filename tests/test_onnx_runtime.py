"""The domain expert on ONNX Runtime: export, the same predictions as torch, no torch import on
the prediction path, checked files, and the CLI's --runtime."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import train_demo_model

from dualexpert.domain import DomainExpert
from dualexpert.domain.onnx_export import export_onnx
from dualexpert.domain.onnx_runtime import StaleExportError

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "dualexpert.cli"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    trained = train_demo_model(tmp_path_factory.mktemp("onnx"))
    export_onnx(trained["model"])
    return trained


def test_onnx_predicts_what_torch_predicts(exported):
    held = exported["held"]
    torch_expert = DomainExpert.load(exported["model"], runtime="torch")
    onnx_expert = DomainExpert.load(exported["model"], runtime="onnx")
    assert onnx_expert.onnx_ is not None and onnx_expert.model is None
    assert torch_expert.onnx_ is None and torch_expert.model is not None
    # the encoder alone, then the shipped fused and prior-adjusted probabilities
    a, b = onnx_expert.encoder_proba(held), torch_expert.encoder_proba(held)
    assert np.abs(a - b).max() < 1e-5
    # the neighbour index's encoder runs from the export too, with the same embeddings
    assert onnx_expert.neighbours_ is not None and onnx_expert.neighbours_._embed_fn is not None
    texts = [p.text() for p in held]
    a, b = onnx_expert.neighbours_.embed(texts), torch_expert.neighbours_.embed(texts)
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-5
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    a, b = onnx_expert.predict_proba(held), torch_expert.predict_proba(held)
    assert np.abs(a - b).max() < 1e-5
    top_a = onnx_expert.predict_topk(held, k=5)
    top_b = torch_expert.predict_topk(held, k=5)
    assert [[c.id for c in r] for r in top_a] == [[c.id for c in r] for r in top_b]
    # batch size and padding do not change an answer
    one = onnx_expert.encoder_proba(held[:7], batch_size=1)
    assert np.abs(one - onnx_expert.encoder_proba(held[:7], batch_size=7)).max() < 1e-5
    # "auto" takes the export; an ONNX-loaded expert cannot be saved (it has no torch weights)
    assert DomainExpert.load(exported["model"]).onnx_ is not None
    with pytest.raises(RuntimeError, match="runtime='torch'"):
        onnx_expert.save(exported["dir"] / "copy")


def test_the_onnx_path_never_imports_torch(exported):
    """A classify job on an exported model, through the Python API, in a fresh process: torch,
    transformers and scikit-learn stay out (their imports are the seconds of start-up)."""
    code = (
        "import sys, json\n"
        "from dualexpert.pipeline import load_dual_expert\n"
        "from dualexpert.batch import classify_iter\n"
        "from dualexpert.data import iter_catalogue\n"
        f"de = load_dual_expert({str(exported['model'])!r}, threshold=0.0, runtime='onnx')\n"
        f"recs = list(classify_iter(de, iter_catalogue({str(exported['dir'] / 'held.jsonl')!r})))\n"
        "heavy = [m for m in ('torch', 'transformers', 'sklearn', 'scipy') if m in sys.modules]\n"
        "print(json.dumps({'n': len(recs), 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"n": len(exported["held"]), "heavy": []}


def test_a_changed_or_stale_export_is_refused(exported, tmp_path, caplog):
    folder = tmp_path / "model"
    shutil.copytree(exported["model"], folder)
    # retrained (here: one weight changed) and saved again: the old export is carried over but
    # no longer matches the weights
    expert = DomainExpert.load(folder, runtime="torch")
    import torch

    with torch.no_grad():
        expert.model.head.bias[0] += 1.0
    expert.save(folder)
    with pytest.raises(StaleExportError, match="export-onnx"):
        DomainExpert.load(folder, runtime="onnx")
    auto = DomainExpert.load(folder)  # auto: says so in the log and predicts on torch
    assert auto.onnx_ is None and auto.model is not None
    assert "exported from other weights" in caplog.text
    export_onnx(folder)
    assert DomainExpert.load(folder).onnx_ is not None
    # an export made before the model had a neighbour index: refused, or torch with "auto"
    info = json.loads((folder / "onnx" / "export.json").read_text())
    (folder / "onnx" / "export.json").write_text(json.dumps({**info, "neighbours": None}))
    with pytest.raises(StaleExportError, match="neighbour index"):
        DomainExpert.load(folder, runtime="onnx")
    auto = DomainExpert.load(folder)
    assert auto.onnx_ is None and auto.neighbours_._embed_fn is None
    export_onnx(folder)
    # a damaged graph is named, with the fix
    with (folder / "onnx" / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="model.onnx does not match"):
        DomainExpert.load(folder, runtime="onnx")
    export_onnx(folder)
    # so is a changed tokenizer (here: no longer lower-casing, which changes every prediction)
    for name in ("tokenizer.json", "neighbours-tokenizer.json"):
        tok = folder / "onnx" / name
        saved = tok.read_text()
        changed = json.loads(saved)
        changed["normalizer"]["lowercase"] = False
        tok.write_text(json.dumps(changed))
        with pytest.raises(ValueError, match=f"{name} does not match"):
            DomainExpert.load(folder, runtime="onnx")
        tok.write_text(saved)
    shutil.rmtree(folder / "onnx")
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        DomainExpert.load(folder, runtime="onnx")
    with pytest.raises(ValueError, match="runtime must be"):
        DomainExpert.load(folder, runtime="tensorrt")


def test_missing_onnxruntime_names_the_extra(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match=r"dualexpert\[onnx\]"):
        DomainExpert.load(exported["model"], runtime="onnx")
    # auto falls back to torch when onnxruntime cannot be imported
    assert DomainExpert.load(exported["model"]).model is not None


def test_cli_export_and_runtime(exported, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(exported["model"], folder, ignore=shutil.ignore_patterns("onnx"))
    held = exported["dir"] / "held.jsonl"
    r = subprocess.run([*CLI, "export-onnx", str(folder)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (folder / "onnx" / "export.json").is_file()
    outs = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.jsonl"
        r = subprocess.run(
            [
                *CLI,
                "predict",
                str(folder),
                str(held),
                "--out",
                str(out),
                "--k",
                "3",
                "--runtime",
                runtime,
            ],  # fmt: skip
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        outs[runtime] = [json.loads(x) for x in out.read_text().splitlines()]
    ids = {k: [[c["id"] for c in r["candidates"]] for r in v] for k, v in outs.items()}
    assert ids["torch"] == ids["onnx"] and len(ids["onnx"]) == len(exported["held"])
    for bad in (["--runtime", "tpu"], ["--runtime", "onnx", "--quantize"]):
        r = subprocess.run(
            [*CLI, "predict", str(folder), str(held), "--out", str(tmp_path / "x.jsonl"), *bad],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "--runtime" in r.stderr or "--quantize" in r.stderr
