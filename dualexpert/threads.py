"""How many CPU threads this process may really use, and applying a thread count.

Two CPU-heavy jobs on one machine, each with one thread per visible core, fight for the cores
(training ran 7× slower). So every command defaults to the CPUs this process is allowed: the
smallest of its CPU affinity, the cgroup CPU quota (containers, Kubernetes) and
``OMP_NUM_THREADS`` when set. ``--threads`` overrides it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_quota(path: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"max 100000"`` = no quota → None)."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def machine_cpus() -> int:
    """The cores this process may run on: min(affinity, cgroup quota), at least 1 (what a pool
    of worker processes may share; ``OMP_NUM_THREADS`` is a per-process thread count)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def available_cpus() -> int:
    """min(affinity, cgroup quota, OMP_NUM_THREADS if set), at least 1."""
    n = machine_cpus()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


def apply_threads(n: int | None) -> int:
    """Use ``n`` threads (``None``: :func:`available_cpus`) for torch and for the native
    libraries this process starts later (OpenMP, BLAS, llama.cpp children). Returns ``n``."""
    n = available_cpus() if n is None else n
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DUALEXPERT_LLM_THREADS"):
        os.environ[var] = str(n)
    # torch reads OMP_NUM_THREADS when it is imported; one already imported is told directly
    # (importing it here would cost a torch-free runtime, such as ONNX, seconds of start-up)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    log.debug("using %d threads", n)
    return n
