"""The llama.cpp build that setup makes uses no instruction beyond its stated portable set
(x86-64-v3: AVX2, FMA, F16C, BMI2): no AVX-512, no AMX, no AVX-VNNI. Checked by disassembling
every shared library of the installed llama_cpp package, so a CPU that advertises AVX-512 or
AMX which the OS does not enable can never hit an illegal instruction in it."""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dualexpert.doctor import PORTABLE, build_features, enabled_features

# Mnemonics and registers that exist only beyond x86-64-v3.
BEYOND = re.compile(
    r"%zmm|%k[1-7]\b|\bkmov|\bvpternlog|\bvpermt2|\bvpcompress|\bvpexpand|\bvpdpbusd|\bvpdpwssd"
    r"|\bvdpbf16ps|\bvcvtne2ps2bf16|\bldtilecfg|\btileloadd|\btdpb|\btilestored|\{evex\}"
)


def _libs() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llama_cpp is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    unique: dict[str, Path] = {}  # wheels carry each library up to 3 times (soname copies)
    for p in sorted(root.rglob("*.so*")):
        if p.is_file():
            unique.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), p)
    return sorted(unique.values())


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 builds only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) not found")
def test_llama_cpp_build_has_no_instruction_beyond_the_portable_set():
    flavour = Path(__import__("sys").prefix, "llama-build-flavour")
    if flavour.exists() and flavour.read_text().strip() == "native":
        pytest.skip("an opt-in native build (DUALEXPERT_LLAMA_NATIVE=1)")
    libs = _libs()
    assert any("ggml" in p.name for p in libs), libs
    hits: dict[str, list[str]] = {}
    for lib in libs:  # objdump piped into grep: Python's re over a million lines is slow
        objdump = subprocess.Popen(
            ["objdump", "-d", "--no-show-raw-insn", str(lib)], stdout=subprocess.PIPE
        )
        grep = subprocess.run(
            ["grep", "-m5", "-E", BEYOND.pattern], stdin=objdump.stdout, capture_output=True,
            text=True,
        )  # fmt: skip
        objdump.stdout.close()
        objdump.wait()
        assert grep.returncode in (0, 1), grep.stderr  # 1: no line matched
        bad = [line.strip() for line in grep.stdout.splitlines() if BEYOND.search(line)]
        if bad:
            hits[lib.name] = bad
    assert not hits, f"instructions beyond x86-64-v3: {hits}"


def test_system_info_parsing_and_os_enablement():
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 0 | AMX_INT8 = 1 |"
    assert build_features(info) == {"SSE3", "AVX", "AVX2", "F16C", "FMA", "AMX_INT8"}
    flags = {"pni", "avx", "avx2", "fma", "f16c", "avx512f", "amx_int8", "amx_tile"}
    # the OS enables SSE/AVX state and AVX-512 (bits 5-7) and AMX TILECFG (17), not TILEDATA (18)
    xmask = 0b111 | 0b111 << 5 | 1 << 17
    on = enabled_features(flags, xmask)
    assert on["AVX2"] and on["AVX512"]
    assert not on["AMX_INT8"]  # advertised by the CPU, not enabled by the OS: the VM
    assert not enabled_features(flags, 0b11)["AVX2"]  # no YMM state → no AVX at all
    assert enabled_features(flags, None)["AMX_INT8"]  # unreadable mask: CPUID alone
    assert set(PORTABLE) <= set(on)


@pytest.mark.slow
def test_doctor_passes_on_this_machine_and_names_the_fix_when_not(monkeypatch):
    from typer.testing import CliRunner

    from dualexpert import doctor
    from dualexpert.cli import app

    res = CliRunner().invoke(app, ["doctor", "--quick"])
    assert res.exit_code == 0, res.output
    assert "llama.cpp build" in res.output and "decode (smollm2)" in res.output
    # a build that uses AVX-512 on a machine whose OS does not enable it
    monkeypatch.setattr(doctor, "build_features", lambda info: {"AVX2", "AVX512"})
    monkeypatch.setattr(doctor, "os_xfeatures", lambda: 0b111)
    check = doctor.native_build()
    assert not check.ok and "AVX512" in check.detail and "setup.sh" in check.fix
