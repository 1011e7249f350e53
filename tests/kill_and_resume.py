"""A command killed with SIGKILL at two moments, then run to the end (crash-and-resume tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def kill_twice_then_finish(
    cmd: list[str], out: Path, waits: tuple[int, int] = (4, 12)
) -> subprocess.CompletedProcess:
    """Run ``cmd`` and SIGKILL it once ``waits[0]`` and once ``waits[1]`` records are in
    ``out``; then run it to the end and return that run."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for wait_lines in waits:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            if out.exists() and len(out.read_bytes().splitlines()) >= wait_lines:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return res
