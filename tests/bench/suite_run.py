"""Running a bench suite script (``bench/*_suite.sh``) in a test, on this Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_suite(script: str, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """``bash bench/<script> *args`` with one OpenMP thread and this interpreter; asserts rc 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    command = ["bash", str(ROOT / "bench" / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done
