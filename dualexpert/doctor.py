"""``dualexpert doctor``: is this machine able to run the project, and if not, what to do.

Each check returns a :class:`Check` (name, ok, detail, fix). Nothing here can crash the caller:
the native llama.cpp build is only ever loaded in child processes.

* versions of the package and its dependencies;
* the CPU features the llama.cpp build was compiled for, against those this CPU advertises and
  the OS has enabled (the kernel's XSAVE feature mask, read with ``arch_prctl``);
* the offline model files and their SHA-256 checks;
* a one-token decode in a child process.
"""

from __future__ import annotations

import ctypes
import importlib.metadata as md
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = (
    "dualexpert",
    "torch",
    "transformers",
    "sentence-transformers",
    "dspy",
    "litellm",
    "faiss-cpu",
    "llama-cpp-python",
    "numpy",
    "pydantic",
)

# llama.cpp's system-info names → (the /proc/cpuinfo flag, the XSAVE state components it needs)
# XSAVE components: 1 SSE, 2 AVX (YMM), 5-7 AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), 17-18 AMX.
FEATURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "SSE3": ("pni", (1,)),
    "SSSE3": ("ssse3", (1,)),
    "AVX": ("avx", (1, 2)),
    "AVX2": ("avx2", (1, 2)),
    "F16C": ("f16c", (1, 2)),
    "FMA": ("fma", (1, 2)),
    "BMI2": ("bmi2", ()),
    "AVX_VNNI": ("avx_vnni", (1, 2)),
    "AVX512": ("avx512f", (5, 6, 7)),
    "AVX512_VBMI": ("avx512vbmi", (5, 6, 7)),
    "AVX512_VNNI": ("avx512_vnni", (5, 6, 7)),
    "AVX512_BF16": ("avx512_bf16", (5, 6, 7)),
    "AMX_INT8": ("amx_int8", (17, 18)),
    "AMX_BF16": ("amx_bf16", (17, 18)),
}
# The set that setup's portable build targets (x86-64-v3).
PORTABLE = ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2")
FIX_REBUILD = "rebuild llama.cpp portably: rm -f .venv/llama-build-flavour && bash scripts/setup.sh"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def versions() -> Check:
    got = []
    missing = []
    for name in PACKAGES:
        try:
            got.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            missing.append(name)
    detail = f"python {platform.python_version()}; " + ", ".join(got)
    if missing:
        detail += f"; not installed: {', '.join(missing)}"
    need = {"torch", "transformers", "dspy", "dualexpert"} & set(missing)
    return Check("versions", not need, detail, "bash scripts/setup.sh" if need else "")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags the CPU advertises (as the kernel lists them)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def os_xfeatures() -> int | None:
    """The XSAVE feature mask the kernel supports (``arch_prctl(ARCH_GET_XCOMP_SUPP)``), or
    None where it cannot be read (not Linux x86-64, or a kernel older than 5.16)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mask = ctypes.c_uint64(0)
        sys_arch_prctl, arch_get_xcomp_supp = 158, 0x1021
        if libc.syscall(sys_arch_prctl, arch_get_xcomp_supp, ctypes.byref(mask)) != 0:
            return None
        return int(mask.value)
    except (OSError, AttributeError):
        return None


def enabled_features(flags: set[str], xmask: int | None) -> dict[str, bool]:
    """For each llama.cpp feature: does the CPU advertise it and the OS enable its state?"""
    out = {}
    for name, (flag, comps) in FEATURES.items():
        ok = flag in flags
        if ok and xmask is not None:
            ok = all(xmask >> c & 1 for c in comps)
        out[name] = ok
    return out


def build_features(system_info: str) -> set[str]:
    """Features a llama.cpp build uses, from ``llama_print_system_info()`` (``AVX2 = 1 | ...``)."""
    return {m.group(1) for m in re.finditer(r"([A-Z0-9_]+) = 1", system_info)} & set(FEATURES)


def _child(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


def native_build(timeout: float = 60.0) -> Check:
    """Compare the llama.cpp build's instruction set with what this machine enables."""
    from .llm_process import describe_exit

    try:
        r = _child("import llama_cpp; print(llama_cpp.llama_print_system_info().decode())", timeout)
    except subprocess.TimeoutExpired:
        return Check("llama.cpp build", False, "importing llama_cpp hung", FIX_REBUILD)
    if r.returncode != 0:
        why = r.stderr.strip().splitlines()[-1:] or [describe_exit(r.returncode)]
        return Check("llama.cpp build", False, f"cannot import llama_cpp: {why[0]}", FIX_REBUILD)
    used = build_features(r.stdout)
    xmask = os_xfeatures()
    enabled = enabled_features(cpu_flags(), xmask)
    bad = sorted(f for f in used if not enabled.get(f, False))
    beyond = sorted(used - set(PORTABLE))
    flavour = Path(sys.prefix, "llama-build-flavour")
    detail = (
        f"build uses {', '.join(sorted(used)) or 'no SIMD extensions'}"
        f" ({flavour.read_text().strip() if flavour.exists() else 'unknown'} build"
        f"{'; beyond the portable set: ' + ', '.join(beyond) if beyond else ''}); "
        f"OS XSAVE mask {hex(xmask) if xmask is not None else 'unreadable'}"
    )
    if bad:
        return Check(
            "llama.cpp build",
            False,
            detail
            + f"; NOT enabled on this machine: {', '.join(bad)} (it would crash with SIGILL)",
            FIX_REBUILD,
        )
    return Check("llama.cpp build", True, detail)


def model_files(llms: tuple[str, ...] = ("qwen-1.5b", "smollm2")) -> list[Check]:
    """Locate (and on first use assemble) each offline model and check its SHA-256."""
    from .models import LLMS, resolve_encoder, resolve_llm, sha256_file

    checks = []
    try:
        checks.append(Check("encoder minilm", True, resolve_encoder("minilm")))
    except Exception as e:
        checks.append(Check("encoder minilm", False, str(e), "bash scripts/setup.sh"))
    for name in llms:
        spec = LLMS[name]
        try:
            path = resolve_llm(name)  # assembles and checks the hash where one is pinned
            if spec.sha256 is not None:
                got = sha256_file(path)
                ok = got == spec.sha256
                detail = f"{path} (SHA-256 {'ok' if ok else 'MISMATCH ' + got})"
            else:
                ok, detail = True, f"{path} (no pinned hash)"
            checks.append(Check(f"LLM {name}", ok, detail, "" if ok else spec.hint))
        except Exception as e:
            checks.append(Check(f"LLM {name}", False, str(e), spec.hint))
    return checks


def decode(llm: str = "smollm2", timeout: float = 180.0) -> Check:
    """A one-token decode in a child process: the native build really runs here."""
    from .llm_process import LLMProcess, LLMUnavailable
    from .models import resolve_llm

    try:
        path = resolve_llm(llm)
    except Exception as e:
        return Check(f"decode ({llm})", False, str(e), "bash scripts/setup.sh")
    proc = LLMProcess(
        {"model_path": path, "n_ctx": 256, "n_threads": 1, "n_batch": 64, "seed": 0},
        timeout=timeout,
        start_timeout=timeout,
        max_restarts=0,
    )
    try:
        out = proc.request("ping")
        return Check(f"decode ({llm})", True, f"one token decoded in a child process: {out}")
    except LLMUnavailable as e:
        return Check(f"decode ({llm})", False, e.reason, FIX_REBUILD)
    finally:
        proc.stop()


def run_checks(quick: bool = False) -> list[Check]:
    """Every check; ``quick`` checks only the small LLM's file (setup uses it)."""
    checks = [versions(), native_build()]
    checks += model_files(("smollm2",) if quick else ("qwen-1.5b", "smollm2"))
    checks.append(decode("smollm2"))
    return checks
