"""A normal install is the whole package: the wheel holds every module of the source tree.

Editable installs (setup and CI use one) hide a package left out of the wheel, so this builds
the real wheel and compares its files with the tree. ``scripts/check_wheel.sh`` (run by
``.ci/run``) then installs it into a fresh environment and imports every public name.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {
    "signatures": "dualexpert/signatures",
    "optimizers": "dualexpert/optimizers",
    "indexes": "dualexpert/indexes",
}


def _expected() -> set[str]:
    want = {str(p.relative_to(ROOT)) for p in (ROOT / "dualexpert").rglob("*.py")}
    want |= {str(p.relative_to(ROOT)) for p in (ROOT / "dualexpert" / "demo").glob("*.csv")}
    for folder, target in MAPPED.items():
        for p in (ROOT / folder).rglob("*.py"):
            want.add(f"{target}/{p.relative_to(ROOT / folder)}")
    return {w for w in want if "__pycache__" not in w}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("dualexpert-*.whl")
    return whl


def test_wheel_has_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected() - names)
    assert not missing, f"left out of the wheel: {missing}"


def test_wheel_installs_no_generic_top_level_name(wheel):
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    tops = {t for t in tops if not t.endswith(".dist-info")}
    assert tops == {"dualexpert"}, tops
