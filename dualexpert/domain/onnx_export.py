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
from .onnx_runtime import EXTRA, FOLDER, FORMAT, GRAPH, INFO, OPSET, TOKENIZER, weights_digest

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
    sample = expert.tokenizer(
        ["a sample product", "another, longer sample product title"],
        padding=True,
        truncation=True,
        max_length=expert.config.max_length,
        return_tensors="pt",
    )
    tmp = d / f".{FOLDER}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # the tracer warns about shape checks it freezes (padding, causal masks); they are
        # constant for this encoder, and the tests compare outputs across batch and text lengths
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                tuple(sample[n] for n in names),
                str(tmp / GRAPH),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "tokens"} for n in names},
                    "logits": {0: "batch"},
                },
                opset_version=opset,
                dynamo=False,
            )
        backend = expert.tokenizer.backend_tokenizer
        backend.no_padding()
        backend.no_truncation()
        backend.save(str(tmp / TOKENIZER))
        info = {
            "format": FORMAT,
            "inputs": names,
            "pad_token": expert.tokenizer.pad_token,
            "pad_id": int(expert.tokenizer.pad_token_id or 0),
            "max_length": expert.config.max_length,
            "opset": opset,
            "torch_version": torch.__version__,
            "sha256": sha256_file(tmp / GRAPH),
            "weights_sha256": weights_digest(d),
        }
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
