"""The benchmark scripts still run against the current API (tiny sizes, synthetic images).

Their figures are not checked here (timed assertions belong in ``bench/``), only that a
script runs to its end and writes the JSON its docs describe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_inference_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "inference.py"), "--families", "unet"]
    command += ["--sizes", "96", "--tile", "64", "--batch-size", "2", "--repeats", "1"]
    command += ["--encoder", "resnet18", "--data-root", str(tmp_path), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads((out / "inference_cpu.json").read_text())["results"]
    assert (row["family"], row["size"], row["batch_size"]) == ("unet", 96, 2)
    assert row["ours_mpix_s"] > 0 and row["naive_mpix_s"] > 0
    assert "| unet | 96² |" in done.stdout
