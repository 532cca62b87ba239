"""``bench/gpu_suite.sh --smoke``: every step of the GPU suite runs, at tiny sizes, on the CPU.

The figures are not checked (timed assertions belong in ``bench/``), only that each step runs
to its end and writes the JSON the suite promises, so the prepared GPU run cannot break
unseen.
"""

from __future__ import annotations

import json
from pathlib import Path

from suite_run import run_suite

#: The smoke mode's steps, in order.
STEPS = (
    "inference",
    "compare_baseline",
    "train_throughput",
    "accuracy",
    "plane_overlap",
    "plane_batches",
    "batch_groups",
    "rank_copies",
    "compile",
    "two_deep",
    "tile_sweep",
)


def test_gpu_suite_smoke_runs_every_step_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_suite("gpu_suite.sh", "--smoke", "--out", str(out), timeout=1200)
    summary = json.loads((out / "gpu_suite_smoke.json").read_text())
    steps = {s["step"]: s["rc"] for s in summary["steps"]}
    assert steps == dict.fromkeys(STEPS, 0)
    (compiled,) = json.loads((out / "compile_speed_cpu.json").read_text())["results"]
    assert compiled["engine"] == {"eager": "PyTorch", "compiled": "PyTorch, compiled"}
    assert compiled["identical"] is True
    rows = json.loads((out / "inference_cpu.json").read_text())["results"]
    assert {r["family"] for r in rows} == {"unet", "maskrcnn"}
    (speed,) = json.loads((out / "inference_speed_cpu.json").read_text())["results"]
    assert speed["speedup_best"] > 0 and "identical" in speed["agreement"]
    (train,) = json.loads((out / "train_throughput_cpu.json").read_text())["results"]
    assert train["crops_per_s"] > 0
    (accuracy,) = json.loads((out / "accuracy_cpu.json").read_text())["results"]
    assert 0.0 <= accuracy["dsb_ap"] <= 1.0
    overlap = json.loads((out / "plane_overlap_cpu.json").read_text())["results"]
    assert [r["threads"] for r in overlap] == [0, 2]
    assert all(r["labels_identical_to_first"] for r in overlap)
    batches = json.loads((out / "plane_batches_cpu.json").read_text())["results"]
    assert [r["planes_together"] for r in batches] == [False, True]
    assert all(r["labels_identical_to_first"] for r in batches)
    groups = json.loads((out / "batch_cpu_groups.json").read_text())["throughput"]
    assert list(groups["runs"]) == ["batch-none-alone", "batch-none"]
    assert groups["runs"]["batch-none"]["same_labels_as_batch-none-alone"]["identical"]
    assert groups["groups_gain"] > 0
    rank = json.loads((out / "rank_speed_cpu.json").read_text())
    assert rank["identical_ranking"] and rank["speedup_best"] > 0
    deep = json.loads((out / "two_deep_cpu.json").read_text())["results"]
    assert [r["two_deep"] for r in deep] == [False, True]
    assert all(r["labels_identical_to_first"] for r in deep)
    sweep = json.loads((out / "tile_sweep_cpu.json").read_text())
    assert [(r["tile"], r["batch_size"]) for r in sweep["results"]] == [(512, 4), (64, 1), (64, 2)]
    assert sweep["candidate"] is not None


def test_gpu_suite_skip_leaves_steps_out(tmp_path: Path) -> None:
    out = tmp_path / "results"
    skips = [arg for step in STEPS for arg in ("--skip", step)]
    done = run_suite("gpu_suite.sh", "--smoke", "--out", str(out), *skips, timeout=120)
    assert done.stdout.count("skipped") == len(STEPS)
    assert json.loads((out / "gpu_suite_smoke.json").read_text())["steps"] == []
    assert not list(out.glob("*_cpu.json"))
