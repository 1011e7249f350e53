"""Thread defaults follow what this process may really use."""

from __future__ import annotations

import os

import pytest

from dualexpert import threads


def test_cgroup_quota(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(f) is None
    f.write_text("150000 100000\n")
    assert threads.cgroup_cpu_quota(f) == 2  # 1.5 CPUs → 2 threads
    f.write_text("50000 100000\n")
    assert threads.cgroup_cpu_quota(f) == 1
    assert threads.cgroup_cpu_quota(tmp_path / "missing") is None


def test_available_cpus_takes_the_smallest(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    assert threads.available_cpus() == 4
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 3)
    assert threads.available_cpus() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.available_cpus() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert threads.available_cpus() == 3


def test_apply_threads_sets_torch_and_children(monkeypatch):
    import torch

    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DUALEXPERT_LLM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # restored after the test
    try:
        assert threads.apply_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        from dualexpert.lm import llm_threads

        assert llm_threads() == 1
        with pytest.raises(ValueError):
            threads.apply_threads(0)
    finally:
        torch.set_num_threads(before)
