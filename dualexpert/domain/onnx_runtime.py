"""The domain expert's encoder on ONNX Runtime: prediction without torch or transformers.

A saved model folder predicts on torch by default. :func:`.onnx_export.export_onnx` (CLI
``dualexpert export-onnx MODEL``) adds ``onnx/`` to it: the encoder and its head as one ONNX graph
(``model.onnx``, token ids in, logits out), the tokenizer as the ``tokenizers`` library reads it
(``tokenizer.json``) and ``export.json`` (the graph's and the tokenizer's SHA-256, and the
SHA-256 of the weights it was exported from). A model with a neighbour index (``neighbours/``)
also gets its encoder as ``neighbours.onnx`` (token ids in, unit-length mean-pooled embeddings
out) with ``neighbours-tokenizer.json``; :class:`OnnxEmbedder` runs it.
``DomainExpert.load(folder, runtime="onnx")`` then predicts with :class:`OnnxEncoder`: the same
probabilities (float32 rounding apart) after a start-up of a fraction of a second instead of the
seconds importing torch and transformers takes, which is what a short ``classify`` job or a
freshly started worker pays.

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
NEIGHBOURS_GRAPH = "neighbours.onnx"
NEIGHBOURS_TOKENIZER = "neighbours-tokenizer.json"
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
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ImportError(f"runtime 'onnx' needs onnxruntime: {EXTRA}") from None

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
        self.folder, self.info = d, info
        self.inputs, self.tokenizer, self.session = _graph(
            sub / GRAPH, sub / TOKENIZER, info, max_length, threads
        )

    def logits(self, texts: list[str]) -> np.ndarray:
        return _run(self.session, self.tokenizer, self.inputs, texts)

    def embedder(self, batch_size: int = 64, weights_sha256: str | None = None) -> OnnxEmbedder:
        """The export's neighbour encoder (:class:`StaleExportError` when the export has none
        or was made from another encoder than ``neighbours/encoder`` holds now, whose SHA-256
        the loader may pass from the manifest it has read)."""
        return OnnxEmbedder(self.folder, self.info, batch_size, weights_sha256)

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


class OnnxEmbedder:
    """The neighbour index's encoder from the export: ``embed(texts)`` gives unit-length
    mean-pooled embeddings, as ``sentence-transformers`` does on torch."""

    def __init__(
        self, folder: Path, info: dict, batch_size: int = 64, weights_sha256: str | None = None
    ) -> None:
        sub = folder / FOLDER
        part = info.get("neighbours")
        encoder = folder / "neighbours" / "encoder" / "model.safetensors"
        if not part or not encoder.is_file():
            raise StaleExportError(
                f"{sub} has no export of the neighbour index's encoder: export again "
                f"(dualexpert export-onnx {folder})"
            )
        if not (sub / NEIGHBOURS_GRAPH).is_file():
            raise FileNotFoundError(f"{sub / NEIGHBOURS_GRAPH} is missing: export the model again")
        if sha256_file(sub / NEIGHBOURS_GRAPH) != part.get("sha256"):
            raise ValueError(
                f"{sub / NEIGHBOURS_GRAPH} does not match {sub / INFO}: export the model again"
            )
        if (weights_sha256 or sha256_file(encoder)) != part.get("weights_sha256"):
            raise StaleExportError(
                f"{sub / NEIGHBOURS_GRAPH} was exported from another encoder than {encoder}: "
                f"export again (dualexpert export-onnx {folder})"
            )
        self.batch_size = batch_size
        self.inputs, self.tokenizer, self.session = _graph(
            sub / NEIGHBOURS_GRAPH, sub / NEIGHBOURS_TOKENIZER, part, part["max_length"], None
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 0), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            vecs = _run(self.session, self.tokenizer, self.inputs, [texts[i] for i in idx])
            if out.shape[1] == 0:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out


def _graph(graph: Path, tokenizer: Path, info: dict, max_length: int, threads: int | None):
    """``(input names, tokenizer, session)`` of an exported graph."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    if not tokenizer.is_file():
        raise FileNotFoundError(f"{tokenizer} is missing: export the model again")
    # exports made before the tokenizer's hash was recorded carry none: they load as before
    if "tokenizer_sha256" in info and sha256_file(tokenizer) != info["tokenizer_sha256"]:
        raise ValueError(
            f"{tokenizer} does not match {tokenizer.parent / INFO} (its SHA-256 differs): the "
            "file was changed; export the model again"
        )
    tok = Tokenizer.from_file(str(tokenizer))
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=info["pad_id"], pad_token=info["pad_token"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or available_cpus()
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
    return list(info["inputs"]), tok, session


def _run(session, tokenizer, inputs: list[str], texts: list[str]) -> np.ndarray:
    encs = tokenizer.encode_batch(texts)
    arrays = {
        "input_ids": np.asarray([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in encs], dtype=np.int64),
        "token_type_ids": np.asarray([e.type_ids for e in encs], dtype=np.int64),
    }
    return session.run(None, {n: arrays[n] for n in inputs})[0]
