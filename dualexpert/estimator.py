"""The contract both trained estimators follow (:class:`~dualexpert.domain.DomainExpert` and
:class:`~dualexpert.relevance.RelevanceDistiller`).

- Configuration is a :class:`StrictConfig`: unknown keys and values of the wrong type are
  errors, at construction and on assignment.
- ``fit`` / ``predict`` / ``save`` / ``load``, where ``load`` returns the same class.
- Every saved folder holds a manifest, ``dualexpert.json``: what the folder is (``format``), its
  format version, the library version that wrote it, the configuration and the SHA-256 of every
  file. Loading checks the format, refuses a newer format version, warns when another library
  version wrote it (as sentence-transformers and DSPy do), and refuses parts that do not belong
  together. Saves are atomic: the folder is written beside the target and swapped in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

MANIFEST = "dualexpert.json"
log = logging.getLogger(__name__)


def library_version() -> str:
    from . import __version__

    return __version__


class StrictConfig(BaseModel):
    """A configuration that rejects unknown keys and wrong types (also on assignment)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    @classmethod
    def from_options(cls, owner: str, options: dict[str, Any]) -> StrictConfig:
        """Build from keyword options; errors name the option and the estimator."""
        try:
            return cls(**options)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
            )
            raise TypeError(f"{owner}: {problems}") from None


def write_manifest(
    folder: Path, fmt: str, version: int, name: str = MANIFEST, **content: Any
) -> Path:
    """Write the manifest (``dualexpert.json``) last and atomically, so a folder with a
    manifest is whole."""
    body = {"format": fmt, "format_version": version, "library_version": library_version()}
    body.update(content)
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, folder / name)
    return folder / name


def read_manifest(folder: Path, fmt: str, version: int, name: str = MANIFEST) -> dict[str, Any]:
    """The manifest of a saved folder of kind ``fmt``; errors name the file and the fix."""
    path = folder / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a saved {fmt} folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); save the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path}: this folder holds a {got!r}, not a {fmt!r}")
    saved = int(meta.get("format_version", 0))
    if saved > version:
        raise ValueError(
            f"{path}: format version {saved} is newer than this library reads ({version}); "
            f"upgrade dualexpert (the folder was written by {meta.get('library_version')})"
        )
    if meta.get("library_version") != library_version():
        warnings.warn(
            f"{folder} was saved by dualexpert {meta.get('library_version')}; this is "
            f"{library_version()}. It loads, but results may differ.",
            stacklevel=3,
        )
    return meta


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative POSIX paths), the manifest left out."""
    out = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        if rel not in (MANIFEST, f".{MANIFEST}.tmp"):
            out[rel] = _sha256(f)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(
    folder: Path, meta: dict[str, Any], required: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> None:
    """Check that the parts of a saved folder belong together: every file the manifest lists is
    there with its hash, and every ``required`` file exists. Errors name the file. Files whose
    names start with one of ``skip`` are not hashed (parts the caller does not read)."""
    for name in required:
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: the folder is incomplete; save the model again"
            )
    for name, digest in (meta.get("files") or {}).items():
        if skip and name.startswith(skip):
            continue
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (listed in {folder / MANIFEST})")
        if _sha256(path) != digest:
            raise ValueError(
                f"{path} does not match {folder / MANIFEST} (its SHA-256 differs): the folder was "
                "changed or half-written; save the model again"
            )


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Write a saved folder next to ``target`` and swap it in only when complete, so a kill
    mid-save leaves the old folder (or none), never a mix. Files of an existing ``target`` that
    the new save does not write (a user's own, older checkpoints) are carried over."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.saving-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        for entry in target.iterdir():
            if not (tmp / entry.name).exists() and entry.name not in (MANIFEST, "config.json"):
                os.replace(entry, tmp / entry.name)
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextmanager
def saved_folder(target: Path, fmt: str, version: int, **manifest: Any) -> Iterator[Path]:
    """Write a saved folder atomically: yields the folder to write the parts into, then adds
    the manifest (with every part's SHA-256) and swaps the folder in.

    ``manifest`` entries may be filled in by the caller inside the block (the dict is read
    after it)."""
    with atomic_folder(target) as d:
        yield d
        write_manifest(d, fmt, version, **manifest, files=file_hashes(d))


def load_manifest(
    folder: Path,
    fmt: str,
    version: int,
    required: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """:func:`read_manifest`, then :func:`verify_files`: the manifest of a whole folder."""
    meta = read_manifest(folder, fmt, version)
    verify_files(folder, meta, required, skip)
    return meta
