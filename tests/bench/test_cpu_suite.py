"""``bench/cpu_suite.sh --smoke``: issue 21's CPU suite runs every step at tiny sizes.

As for the GPU suite, the figures are not checked (timed assertions belong in ``bench/``),
only that each step runs to its end and writes the JSON the suite names after its tag, so
that the one-run measurement on a fresh clone cannot break unseen.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from suite_run import run_suite

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_suite_smoke_runs_every_step_and_names_its_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_suite("cpu_suite.sh", "--smoke", "--out", str(out), "--tag", "smoke1", timeout=900)
    summary = json.loads((out / "cpu_suite_smoke1.json").read_text())
    assert summary["mode"] == "smoke" and summary["tag"] == "smoke1"
    assert {s["step"]: s["rc"] for s in summary["steps"]} == dict.fromkeys(
        ("compare_baseline", "postprocess", "memory", "cold_start"), 0
    )
    (speed,) = json.loads((out / "inference_speed_cpu_smoke1.json").read_text())["results"]
    assert speed["speedup_best"] > 0 and "identical" in speed["agreement"]
    post = json.loads((out / "postprocess_speed_cpu_smoke1.json").read_text())["results"]
    assert [r["family"] for r in post] == ["unet", "unet", "maskrcnn"]
    assert all(r["identical"] for r in post)
    memory = json.loads((out / "inference_memory_cpu_smoke1.json").read_text())["results"]
    assert [r["pipeline"] for r in memory] == ["old", "new"]
    assert all(r["peak_mib"] >= r["rss_after_warmup_mib"] > 0 for r in memory)
    (start,) = json.loads((out / "cold_start_cpu_smoke1.json").read_text())["results"]
    assert start["same_labels"] and start["now"]["smp_imported"] == [False]


def test_cpu_suite_rejects_an_unknown_option(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "cpu_suite.sh"), "--fast"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "usage: bench/cpu_suite.sh" in done.stderr
