"""Export a saved domain expert to ONNX (CLI ``dualexpert export-onnx MODEL``): the encoder and
head as one graph in ``MODEL/onnx/``, which :class:`.onnx_runtime.OnnxEncoder` runs. Needs torch
and the ``onnx`` package (``pip install 'dualexpert[onnx]'``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ..models import sha256_file
from .expert import DomainExpert
from .onnx_runtime import (
    EXTRA,
    FOLDER,
    FORMAT,
    GRAPH,
    INFO,
    NEIGHBOURS_GRAPH,
    NEIGHBOURS_TOKENIZER,
    OPSET,
    TOKENIZER,
    weights_digest,
)

log = logging.getLogger(__name__)


def export_onnx(folder: str | Path, opset: int = OPSET) -> Path:
    """Export the saved domain expert in ``folder`` to ``folder/onnx/`` (replaced whole, so an
    interrupted export leaves the old one or none). Returns that folder."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ImportError(f"exporting to ONNX needs the onnx package: {EXTRA}") from None
    import torch

    d = Path(folder)
    expert = DomainExpert.load(d, runtime="torch")
    assert expert.model is not None and expert.tokenizer is not None
    names = [n for n in expert.tokenizer.model_input_names if n != "labels"]
    graph = _Logits(expert.model, names).eval()
    tmp = d / f".{FOLDER}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        info = {
            "format": FORMAT,
            **_export(
                graph, expert.tokenizer, names, "logits", tmp / GRAPH, tmp / TOKENIZER, opset
            ),
            "max_length": expert.config.max_length,
            "opset": opset,
            "torch_version": torch.__version__,
            "weights_sha256": weights_digest(d),
        }
        if expert.neighbours_ is not None:
            info["neighbours"] = _export_neighbours(d / "neighbours", tmp, opset)
        (tmp / INFO).write_text(json.dumps(info, indent=1), encoding="utf-8")
        old = d / f".{FOLDER}.old-{os.getpid()}"
        if (d / FOLDER).exists():
            os.replace(d / FOLDER, old)
        os.replace(tmp, d / FOLDER)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s to %s", d, d / FOLDER)
    return d / FOLDER


def _export(
    graph: Any,
    tokenizer: Any,
    names: list[str],
    output: str,
    path: Path,
    tok_path: Path,
    opset: int,
) -> dict[str, Any]:
    """Trace ``graph`` (positional inputs ``names``) to ``path`` and save ``tokenizer`` beside
    it (``tok_path``) as the ``tokenizers`` library reads it; returns the export's info."""
    import torch

    sample = tokenizer(
        ["a sample product", "another, longer sample product title"],
        padding=True,
        truncation=True,
        return_tensors="pt",
    )
    # the tracer warns about shape checks it freezes (padding, causal masks); they are
    # constant for these encoders, and the tests compare outputs across batch and text lengths
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(sample[n] for n in names),
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, output: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(tok_path))
    return {
        "inputs": names,
        "pad_token": tokenizer.pad_token,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "sha256": sha256_file(path),
        "tokenizer_sha256": sha256_file(tok_path),
    }


def _export_neighbours(folder: Path, tmp: Path, opset: int) -> dict[str, Any]:
    """Export the neighbour index's encoder (``folder/encoder``, a sentence-transformers folder
    that mean-pools) as a graph of unit-length embeddings."""
    from transformers import AutoModel, AutoTokenizer

    src = folder / "encoder"
    pooling = src / "1_Pooling" / "config.json"
    modes = json.loads(pooling.read_text(encoding="utf-8")) if pooling.is_file() else {}
    # sentence-transformers writes "pooling_mode": "mean" (v5) or one flag per mode (older)
    on = {k for k, v in modes.items() if k.startswith("pooling_mode_") and v}
    mode = modes.get("pooling_mode") or ",".join(sorted(on))
    if mode not in ("mean", "pooling_mode_mean_tokens"):
        raise ValueError(f"{src}: only a mean-pooling encoder can be exported (it has {mode!r})")
    meta = json.loads((folder / "neighbours.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(src)
    names = [n for n in tokenizer.model_input_names if n != "labels"]
    graph = _Pooled(AutoModel.from_pretrained(src).eval(), names).eval()
    info = _export(
        graph,
        tokenizer,
        names,
        "embeddings",
        tmp / NEIGHBOURS_GRAPH,
        tmp / NEIGHBOURS_TOKENIZER,
        opset,
    )
    return {
        **info,
        "max_length": int(meta["max_length"]),
        "weights_sha256": sha256_file(src / "model.safetensors"),
    }


def _Pooled(model: Any, names: list[str]) -> Any:
    """``model`` as a module of positional ``names`` inputs giving unit-length mean-pooled
    token states (what sentence-transformers computes for the neighbour index)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            kw = dict(zip(names, inputs, strict=True))
            hidden = self.model(**kw)[0]
            mask = kw["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled()


def _Logits(model: Any, names: list[str]) -> Any:
    """``model`` as a module whose positional inputs are the tokenizer's ``names``, returning
    the logits alone (what ONNX tracing needs)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True)))["logits"]

    return Logits()
