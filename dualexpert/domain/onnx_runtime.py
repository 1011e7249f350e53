"""The domain expert's encoder on ONNX Runtime: prediction without torch or transformers.

A saved model folder predicts on torch by default. :func:`.onnx_export.export_onnx` (CLI
``dualexpert export-onnx MODEL``) adds ``onnx/`` to it: the encoder and its head as one ONNX graph
(``model.onnx``, token ids in, logits out), the tokenizer as the ``tokenizers`` library reads it
(``tokenizer.json``) and ``export.json`` (the graph's SHA-256, and the SHA-256 of the weights it
was exported from). ``DomainExpert.load(folder, runtime="onnx")`` then predicts with
:class:`OnnxEncoder`: the same probabilities (float32 rounding apart) after a start-up of a
fraction of a second instead of the seconds importing torch and transformers takes, which is
what a short ``classify`` job or a freshly started worker pays.

Needs the ``onnx`` extra (``pip install 'dualexpert[onnx]'``: ``onnx`` to export,
``onnxruntime`` to run).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..models import sha256_file
from ..threads import available_cpus

log = logging.getLogger(__name__)

FOLDER = "onnx"
GRAPH = "model.onnx"
TOKENIZER = "tokenizer.json"
INFO = "export.json"
FORMAT = "domain-expert-onnx"
OPSET = 17
EXTRA = "pip install 'dualexpert[onnx]'"  # what both halves need


class StaleExportError(ValueError):
    """The ONNX graph was exported from other weights than the folder holds now."""


def weights_digest(folder: Path) -> str:
    """The SHA-256 of ``model.safetensors`` as the folder's manifest records it (computed when
    the manifest does not list it)."""
    from ..estimator import MANIFEST

    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files") or {}
    except (OSError, ValueError):
        files = {}
    return files.get("model.safetensors") or sha256_file(folder / "model.safetensors")


def has_export(folder: str | Path) -> bool:
    return (Path(folder) / FOLDER / INFO).is_file()


class OnnxEncoder:
    """The exported encoder and head: ``proba(texts, batch_size)`` gives softmax probabilities
    over the classes, as the torch model does.

    Loading checks the graph's SHA-256 and that it was exported from the folder's current
    weights (:class:`StaleExportError` otherwise: export again)."""

    def __init__(
        self,
        folder: str | Path,
        max_length: int,
        threads: int | None = None,
        weights_sha256: str | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(f"runtime 'onnx' needs onnxruntime: {EXTRA}") from None
        from tokenizers import Tokenizer

        d = Path(folder)
        sub = d / FOLDER
        if not (sub / INFO).is_file():
            raise FileNotFoundError(
                f"{sub / INFO} is missing: export the model first (dualexpert export-onnx {d})"
            )
        try:
            info = json.loads((sub / INFO).read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{sub / INFO} is not valid JSON ({e}): export again") from None
        if info.get("format") != FORMAT:
            raise ValueError(f"{sub / INFO}: not an ONNX export of a domain expert")
        for name in (GRAPH, TOKENIZER):
            if not (sub / name).is_file():
                raise FileNotFoundError(f"{sub / name} is missing: export the model again")
        if sha256_file(sub / GRAPH) != info.get("sha256"):
            raise ValueError(
                f"{sub / GRAPH} does not match {sub / INFO} (its SHA-256 differs): the file was "
                "changed or half-written; export the model again"
            )
        # the loader passes the weights' hash from the manifest it has read already
        if info.get("weights_sha256") != (weights_sha256 or weights_digest(d)):
            raise StaleExportError(
                f"{sub} was exported from other weights than {d / 'model.safetensors'}: "
                f"export again (dualexpert export-onnx {d})"
            )
        self.inputs = list(info["inputs"])
        self.tokenizer = Tokenizer.from_file(str(sub / TOKENIZER))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=info["pad_id"], pad_token=info["pad_token"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or available_cpus()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(sub / GRAPH), opts, providers=["CPUExecutionProvider"]
        )

    def logits(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts)
        arrays = {
            "input_ids": np.asarray([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in encs], dtype=np.int64),
        }
        return self.session.run(None, {n: arrays[n] for n in self.inputs})[0]

    def proba(self, texts: list[str], batch_size: int, n_classes: int) -> np.ndarray:
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths per batch
        out = np.zeros((len(texts), n_classes), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            z = self.logits([texts[i] for i in idx]).astype(np.float32)
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            out[idx] = e / e.sum(axis=1, keepdims=True)
        return out
