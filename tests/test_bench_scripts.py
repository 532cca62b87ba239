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

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a benchmark command on one thread; fail with the tail of its stderr if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def bench_module(name: str):
    """The benchmark script ``bench/<name>.py`` as a module (``bench/`` importable meanwhile,
    as the scripts import each other)."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


def dsb_folder(tmp_path: Path, names: tuple[str, ...]) -> Path:
    """A data root whose DSB training images are the named sample images."""
    images = tmp_path / "data" / "dsb2018" / "stage1_train" / "images"
    images.mkdir(parents=True)
    for name in names:
        (images / name).write_bytes((ROOT / "sample_data" / "images" / name).read_bytes())
    return tmp_path / "data"


def test_inference_benchmark_runs_both_families_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "inference.py"), "--families", "unet"]
    command += ["maskrcnn", "--sizes", "96", "--tile", "64", "--batch-size", "2"]
    command += ["--repeats", "1", "--encoder", "resnet18", "--maskrcnn-min-size", "64"]
    command += ["--data-root", str(tmp_path), "--out", str(out)]
    done = run_bench(command)
    rows = json.loads((out / "inference_cpu.json").read_text())["results"]
    assert [(r["family"], r["size"], r["batch_size"]) for r in rows] == [
        ("unet", 96, 2),
        ("maskrcnn", 96, 2),
    ]
    for row in rows:
        assert row["ours_mpix_s"] > 0 and row["naive_mpix_s"] > 0
    assert "| unet | 96² |" in done.stdout
    assert "| maskrcnn | 96² |" in done.stdout


def test_block_agreement_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "agreement.json"
    command = [sys.executable, str(ROOT / "bench" / "block_agreement.py"), "--size", "384"]
    command += ["--block-size", "128", "--halo", "32", "--shift", "32", "40", "--margin", "8"]
    command += ["--images", str(tmp_path / "none"), "--out", str(out)]  # the bundled samples
    done = run_bench(command)
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"blocks_vs_whole", "shifted_32_vs_whole", "shifted_40_vs_whole"}
    for row in results.values():
        assert 0.0 <= row["f1@0.5"] <= 1.0 and 0.0 <= row["dsb_ap"] <= 1.0
        assert row["objects"][0] > 0
    assert "| blocks_vs_whole |" in done.stdout


def test_threshold_sweep_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    from napari_cellseg.io.samples import get_sample
    from tiny_models import save_tiny

    sample = get_sample("dsb_fluorescence")
    for folder in ("images", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    (tmp_path / "data" / "images" / "a.png").write_bytes(sample.image_path.read_bytes())
    (tmp_path / "data" / "masks" / "a.tif").write_bytes(sample.mask_path.read_bytes())
    weights = save_tiny("unet", tmp_path / "u.safetensors")
    out = tmp_path / "sweep.json"
    command = [sys.executable, str(ROOT / "bench" / "threshold_sweep.py"), "--weights"]
    command += [str(weights), "--data", str(tmp_path / "data"), "--tta", "1", "2"]
    command += ["--values", "0.4", "0.6", "--out", str(out)]
    done = run_bench(command)
    result = json.loads(out.read_text())
    assert result["param"] == "prob_threshold" and set(result["runs"]) == {"1", "2"}
    for run in result["runs"].values():
        assert set(run["by_value"]) == {"0.4", "0.6"}
        assert all(0.0 <= m["dsb_ap"] <= 1.0 for m in run["by_value"].values())
    assert "| 0.4 |" in done.stdout


def test_tta_fusion_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    from napari_cellseg.io.samples import list_samples
    from tiny_models import save_tiny

    for folder in ("images", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for sample in list_samples():  # 3 images: 2 to tune, 1 held out
        (tmp_path / "data" / "images" / f"{sample.key}.png").write_bytes(
            sample.image_path.read_bytes()
        )
        (tmp_path / "data" / "masks" / f"{sample.key}.tif").write_bytes(
            sample.mask_path.read_bytes()
        )
    weights = save_tiny("maskrcnn", tmp_path / "m.safetensors")
    out = tmp_path / "fusion.json"
    command = [sys.executable, str(ROOT / "bench" / "tta_fusion.py"), "--weights", str(weights)]
    command += ["--data", str(tmp_path / "data"), "--split", "heldout", "--tta", "2"]
    command += ["--tile", "512", "--cache", str(tmp_path / "c.pkl"), "--out", str(out)]
    run_bench(command)
    report = json.loads(out.read_text())
    assert report["n_listed"] == 1 and report["tta"] == 2
    assert "all/v1/score 0.5" in report["results"] and "first/v1/score 0.5" in report["results"]
    assert (tmp_path / "c.pkl").exists()


def test_diameter_check_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "diameter.json"
    command = [sys.executable, str(ROOT / "bench" / "diameter_check.py"), "--factors", "2"]
    command += ["--samples", "dsb_fluorescence", "--out", str(out)]
    done = run_bench(command)
    (row,) = json.loads(out.read_text())["results"]
    assert row["factor"] == 2.0 and row["auto"]["scale"] < 1 and row["off"]["scale"] == 1.0
    assert "| dsb_fluorescence ×2 |" in done.stdout


def test_object_size_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    from napari_cellseg.io.samples import list_samples
    from tiny_models import save_tiny

    data = tmp_path / "data"
    for folder in ("images", "masks"):
        (data / folder).mkdir(parents=True)
    for sample in list_samples():  # 3 images: the seeded 15 % split holds one out
        (data / "images" / sample.image_path.name).write_bytes(sample.image_path.read_bytes())
        mask = data / "masks" / f"{sample.image_path.stem}.tif"
        mask.write_bytes(sample.mask_path.read_bytes())
    weights = save_tiny("unet", tmp_path / "u.safetensors")
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "object_size.py"), "--weights", str(weights)]
    command += ["--data", str(data), "--scales", "1", "2", "--out", str(out)]
    done = run_bench(command)
    result = json.loads((out / "object_size.json").read_text())["results"]["u.safetensors"]
    modes = {(s["factor"], s["mode"]) for s in result["summary"]}
    assert modes == {(f, m) for f in (1.0, 2.0) for m in ("auto", "true", "off")}
    assert all(0.0 <= s["dsb_ap"] <= 1.0 for s in result["summary"])
    assert "| ×2 | off |" in done.stdout


def test_whole_slide_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "whole_slide.py"), "--sizes", "1100"]
    command += ["--out", str(tmp_path), "--name", "ws.json", "--work", str(tmp_path)]
    done = run_bench(command)
    (run,) = json.loads((tmp_path / "ws.json").read_text())["runs"]
    assert run["level_shape"] == [1100, 1100, 3] and run["objects"] > 0
    assert run["pyramid_levels"] == 2  # read as a slide (a pyramid), not as a plain TIFF
    assert run["peak_rss_mib"] > 0 and "| 1100² RGB | 0 (1100²)" in done.stdout


def test_inference_memory_benchmark_runs_each_pair_in_its_own_process(tmp_path: Path) -> None:
    from tiny_models import save_tiny

    unet = save_tiny("unet", tmp_path / "u.safetensors")
    maskrcnn = save_tiny("maskrcnn", tmp_path / "m.safetensors")
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "inference_memory.py"), "--shapes", "96x96"]
    command += ["--pipelines", "old", "new", "--weights-unet", str(unet)]
    command += ["--weights-maskrcnn", str(maskrcnn), "--data-root", str(tmp_path / "none")]
    command += ["--out", str(out)]
    done = run_bench(command)
    rows = json.loads((out / "inference_memory_cpu.json").read_text())["results"]
    assert [(r["family"], r["pipeline"]) for r in rows] == [
        ("unet", "old"),
        ("unet", "new"),
        ("maskrcnn", "old"),
        ("maskrcnn", "new"),
    ]
    for row in rows:
        assert row["peak_mib"] >= row["rss_after_warmup_mib"] > 0 and len(row["seconds"]) == 2
        assert row["repeats"] == 1 and row["peaks_mib"] == [row["peak_mib"]]
    assert "| unet | dsb 96x96 |" in done.stdout


def test_inference_memory_keeps_the_run_of_median_peak(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from inference_memory import median_run

    runs = [
        {"peak_mib": p, "peak_above_mib": p - 800, "seconds": [p]} for p in (880, 861, 870, 902)
    ]
    row = median_run(runs)
    assert (row["peak_mib"], row["peak_above_mib"], row["seconds"]) == (870, 70, [870])
    assert row["repeats"] == 4 and row["peaks_mib"] == [880, 861, 870, 902]
    assert row["peaks_above_mib"] == [80, 61, 70, 102]
    assert median_run(runs[:1])["peak_mib"] == 880


def test_auto_reuse_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "auto_reuse.py"), "--images", "2"]
    command += ["--repeats", "1", "--data", str(tmp_path / "none"), "--out", str(out)]
    done = run_bench(command)
    result = json.loads((out / "auto_reuse_cpu.json").read_text())
    assert len(result["images"]) == 2 and result["labels_identical"] is True
    assert len(result["seconds_reuse"]) == len(result["seconds_run_again"]) == 2
    assert "| 2 |" in done.stdout


def test_plane_overlap_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "plane_overlap.py"), "--planes", "3"]
    command += ["--size", "128", "--threads", "0", "2", "--repeats", "1"]
    command += ["--data-root", str(tmp_path / "none"), "--out", str(out)]
    done = run_bench(command)
    result = json.loads((out / "plane_overlap_cpu.json").read_text())
    assert [r["threads"] for r in result["results"]] == [0, 2]
    assert all(r["labels_identical_to_first"] for r in result["results"])
    assert result["default_threads"] == 0  # the CPU keeps plane after plane
    assert "| 2 |" in done.stdout


def test_rank_speed_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    data = dsb_folder(tmp_path, ("dsb_fluorescence.png", "dsb_brightfield.png"))
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "rank_speed.py"), "--images", "2"]
    command += ["--repeats", "1", "--diameter", "off", "--data-root", str(data)]
    command += ["--out", str(out)]
    run_bench(command)
    report = json.loads((out / "rank_speed_cpu.json").read_text())
    assert report["identical_ranking"] and report["speedup_best"] > 0
    assert set(report["seconds"]) == {"together", "one_by_one"}
    assert len(report["images"]) == 2


def test_onnx_profile_benchmark_writes_the_shares_by_operator(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("onnxruntime")
    from tiny_models import save_tiny

    weights = save_tiny("unet", tmp_path / "tiny.safetensors")
    command = [sys.executable, str(ROOT / "bench" / "onnx_profile.py"), "--weights", str(weights)]
    command += ["--tile", "64", "--warmup", "1", "--repeats", "1", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NAPARI_CELLSEG_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "onnx_profile_cpu.json").read_text())
    assert result["tile"] == [64, 64] and len(result["seconds_per_run"]) == 1
    assert result["share_by_op"]["Conv"] > 0.3
    assert abs(sum(result["share_by_op"].values()) - 1) < 0.01
    assert "| Conv |" in done.stdout


def test_cold_start_benchmark_times_fresh_processes_before_and_now(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("onnxruntime")
    from tiny_models import save_tiny

    weights = save_tiny("unet", tmp_path / "tiny.safetensors")
    command = [sys.executable, str(ROOT / "bench" / "cold_start.py"), "--weights", str(weights)]
    command += ["--cases", "one", "--repeats", "1", "--extra=--diameter off"]
    command += ["--out", str(tmp_path), "--name", "cold.json"]
    done = run_bench(command)
    (row,) = json.loads((tmp_path / "cold.json").read_text())["results"]
    assert row["case"] == "one" and row["images"] == ["dsb_fluorescence.png"]
    assert row["before"]["smp_imported"] == [True]  # the model built, as before
    assert row["now"]["smp_imported"] == [False]  # the recorded export, no model
    assert row["same_labels"] is True
    assert row["now"]["wall_s"][0] > 0 and row["now"]["peak_rss_mib"][0] > 0
    assert "| one |" in done.stdout


def test_batch_diameter_benchmark_runs_auto_then_the_notes_median(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "batch_diameter.py"), "--images", "3"]
    command += ["--data", str(tmp_path / "none"), "--out", str(out)]
    done = run_bench(command)
    runs = json.loads((out / "batch_diameter_cpu.json").read_text())["runs"]
    assert runs["auto"]["note"].startswith("median ") and "3 images" in runs["auto"]["note"]
    assert f"median {runs['given']['diameter']} px" in runs["auto"]["note"]
    assert all(0.0 <= run["dsb_ap"] <= 1.0 for run in runs.values())
    given = runs["given"]["diameter"]
    assert "| auto |" in done.stdout and f"| --diameter {given} |" in done.stdout


def test_hitl_grades_reads_runs_and_grades_and_writes_json(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    run = {"recipe": "fast", "seed": 0, "kept_base": False, "val_image": "train_4"}
    runs = [
        {**run, "selection": "random", "train_images": ["train_1", "train_2", "train_3"],
         "corrected_objects": 30, "test": {"dsb_ap": 0.2}},
        {**run, "selection": "top", "train_images": ["train_2", "train_3", "train_5"],
         "corrected_objects": 12, "test": {"dsb_ap": 0.1}},
        {**run, "selection": "top", "train_images": ["train_1", "train_2", "train_3"],
         "corrected_objects": 30, "test": {"dsb_ap": 0.0}, "kept_base": True},
    ]  # fmt: skip
    (results / "hitl_glas_x.json").write_text(json.dumps({"runs": runs}))
    grades = tmp_path / "Grade.csv"
    rows = ["name,patient ID, grade (GlaS), grade (other)"]
    rows += [f"train_{i}, 1, {'benign' if i == 1 else 'malignant'}, x" for i in range(1, 6)]
    grades.write_text("\n".join(rows) + "\n")
    out = tmp_path / "grades.json"
    command = [sys.executable, str(ROOT / "bench" / "hitl_grades.py"), "--results", str(results)]
    command += ["--grades", str(grades), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads(out.read_text())
    assert [(r["selection"], r["grades"]) for r in written["rows"]] == [
        ("random", "b m m"),
        ("top", "m m m"),
    ]  # the run that kept its base is left out
    assert written["by_benign"] == {
        "0": {"runs": 1, "mean_dsb_ap": 0.1, "mean_glands": 12.0},
        "1": {"runs": 1, "mean_dsb_ap": 0.2, "mean_glands": 30.0},
    }


def test_hitl_rounds_table_compares_the_two_second_rounds() -> None:
    module = bench_module("hitl_rounds")
    seeds = [
        {"seed": s, "round1": {"objects": 9, "test": {"dsb_ap": 0.1}},
         "round2_top": {"objects": 5, "test": {"dsb_ap": top}},
         "round2_random": {"objects": 7, "test": {"dsb_ap": 0.2}}}
        for s, top in ((0, 0.3), (1, 0.1))
    ]  # fmt: skip
    lines = module.table(seeds).splitlines()
    assert lines[2] == "| 0 | 0.100 (9 objects) | 0.300 (5 objects) | 0.200 (7 objects) | +0.100 |"
    assert lines[3].endswith("| -0.100 |")
    assert lines[4] == "| mean | 0.100 | 0.200 | 0.200 | +0.000 |"
    assert lines[-1].startswith("M1 handed back: round 2: + 3 top-ranked by M1: 0/2;")
    seeds[0]["round2_gentle_random"] = {"objects": 7, "test": {"dsb_ap": 0.4}, "kept_base": True}
    seeds[1]["round2_gentle_random"] = {"objects": 7, "test": {"dsb_ap": 0.2}}
    lines = module.table(seeds).splitlines()
    assert lines[0].endswith("| round 2 gentle: + 3 random | top - random |")
    assert lines[4] == "| mean | 0.100 | 0.200 | 0.200 | 0.300 | +0.000 |"
    assert lines[-1].endswith("round 2 gentle: + 3 random: 1/2")


def test_hitl_kept_model_is_made_once_and_then_reused(tmp_path: Path) -> None:
    module = bench_module("hitl")
    made: list[Path] = []

    def make(path: Path) -> dict:
        path.write_bytes(b"weights")
        made.append(path)
        return {"test": {"dsb_ap": 0.5}}

    path, record = module.kept_model(None, tmp_path, "m", make)
    assert path == tmp_path / "m.safetensors" and record == {"test": {"dsb_ap": 0.5}}
    keep = tmp_path / "keep"
    first = module.kept_model(keep, tmp_path, "m", make)
    again = module.kept_model(keep, tmp_path, "m", make)
    assert len(made) == 2  # once without keep, once into keep, not again
    assert first == (keep / "m.safetensors", {"test": {"dsb_ap": 0.5}})
    assert again == (
        keep / "m.safetensors",
        {"test": {"dsb_ap": 0.5}, "reused": str(keep / "m.safetensors")},
    )


def test_hitl_em_domain_keeps_the_first_half_of_the_sections_for_the_pool(
    tmp_path: Path, monkeypatch
) -> None:
    from skimage.io import imsave

    module = bench_module("hitl")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 1
    for sub, data in (("images", mask * 200), ("masks", mask)):
        folder = tmp_path / "isbi2012_em" / "train" / sub
        folder.mkdir(parents=True)
        for k in range(6):
            imsave(folder / f"slice_{k:02d}.png", data, check_contrast=False)
    monkeypatch.setattr(module, "DATA", tmp_path)
    pool, test = module.domain_split("em", None)
    assert [p.image_path.name for p in pool] == ["slice_00.png", "slice_01.png", "slice_02.png"]
    assert [p.image_path.name for p in test] == ["slice_03.png", "slice_04.png", "slice_05.png"]
    assert [p.image_path.name for p in module.domain_split("em", 2)[1]] == [
        "slice_03.png",
        "slice_04.png",
    ]


def test_hitl_report_keeps_runs_ranked_at_a_given_size_apart(tmp_path: Path) -> None:
    module = bench_module("hitl")

    def row(selection: str, seed: int, ap: float, given: bool) -> dict:
        return {"recipe": "fast", "selection": selection, "seed": seed, "protocol": "paired",
                "ranking_diameter": "120" if given else None, "rank_diameter_given": given,
                "train_seconds": 300.0, "kept_base": False, "test": {"dsb_ap": ap}}  # fmt: skip

    runs = [row("top", 0, 0.2, True), row("top", 1, 0.1, True), row("random", 0, 0.1, False)]
    runs.append(row("top", 0, 0.05, False))  # ranked at the model's own size (an older run)
    result = {"runs": runs, "base_score": {"dsb_ap": 0.001}, "domain": "glas", "test": 60,
              "base": "unet_dsb.safetensors"}  # fmt: skip
    (tmp_path / "hitl_glas_x.json").write_text(json.dumps(result))
    (tmp_path / "hitl_rounds_glas.json").write_text(json.dumps({"rows": []}))  # not a hitl.py run
    table = module.report(tmp_path)
    assert "| fast | top-ranked (total doubt) at 120 px, paired | 0,1 | 0.150 ± 0.050 |" in table
    assert "| fast | top-ranked (total doubt), paired | 0 | 0.050 ± 0.000 |" in table
    assert "| fast | random, paired | 0 | 0.100 ± 0.000 |" in table


def test_post_stages_benchmark_times_each_stage_and_matches_the_whole(tmp_path: Path) -> None:
    data = dsb_folder(tmp_path, ("dsb_fluorescence.png",))
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "post_stages.py"), "--sizes", "256"]
    command += ["--repeats", "1", "--data-root", str(data), "--out", str(out)]
    done = run_bench(command)
    (row,) = json.loads((out / "post_stages_cpu.json").read_text())["results"]
    assert row["labels_equal_unet_instances"] is True and row["objects"] > 0
    assert set(row["stage_cpu_seconds"]) == {
        "thresholds_and_seeds", "fill_holes", "label_seeds", "fallback_markers", "flood",
        "finish", "object_table",
    }  # fmt: skip
    assert sum(row["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert "| flood |" in done.stdout


def test_network_floor_benchmark_times_old_new_and_floor(tmp_path: Path) -> None:
    data = dsb_folder(tmp_path, ("dsb_fluorescence.png",))
    out = tmp_path / "results"
    command = [sys.executable, str(ROOT / "bench" / "network_floor.py"), "--shapes", "200x136"]
    command += ["--tile", "128", "--repeats", "1", "--data-root", str(data), "--out", str(out)]
    done = run_bench([*command, "--two-sessions"])
    (row,) = json.loads((out / "network_floor_cpu.json").read_text())["results"]
    if row["engine"] == "ONNX Runtime":  # the two-session floor needs ONNX Runtime
        assert len(row["seconds_floor_two_sessions"]) == 1 and row["two_sessions_gain"] > 0
    assert row["shape"] == [200, 136] and row["floor_tiles"] == 4  # padded to 208 x 144
    assert row["floor_pixels_per_image_pixel"] == pytest.approx(208 * 144 / (200 * 136))
    assert all(len(row[f"seconds_{k}"]) == 1 for k in ("old", "new", "floor", "new_network"))
    bound = row["seconds_old"][0] / row["seconds_floor"][0]  # seconds kept to 4 decimals
    assert row["speedup_floor"] == pytest.approx(bound, rel=0.01)
    assert "| dsb mosaic 200x136 |" in done.stdout


def test_hitl_strips_split_each_image_into_a_training_part_and_a_validation_band(
    tmp_path: Path,
) -> None:
    import random

    import numpy as np

    from napari_cellseg.training.pairs import load_region, scan_training_folders

    module = bench_module("hitl_strips")
    held = module.band((30, 50), 0.25, random.Random(1))
    columns = np.flatnonzero(held.any(axis=0))
    assert held.sum() == 30 * 12 and np.all(np.diff(columns) == 1)  # one band: round(12.5)
    pairs = scan_training_folders([ROOT / "sample_data"])
    train, val = module.strip_folders(pairs, tmp_path, 0.25, seed=0)
    read = {d: {p.name: p for p in scan_training_folders([d])} for d in (train, val)}
    for pair in pairs:
        shape = np.asarray(module.read_labels(pair.mask_path)).shape[-2:]
        inside = load_region(read[train][pair.name], shape)
        band = load_region(read[val][pair.name], shape)
        assert not np.any(inside & band) and np.all(inside | band)
        assert abs(band.mean() - 0.25) < 0.01
    assert (
        module.table(
            [{"seed": 0, "image": {"test": {"dsb_ap": 0.1}}, "strips": {"test": {"dsb_ap": 0.3}}}]
        ).splitlines()[-1]
        == "| mean | 0.100 | 0.300 | +0.200 |"
    )


def test_hitl_fine_tune_records_how_much_of_its_threads_time_it_had(tmp_path: Path) -> None:
    from napari_cellseg.training.pairs import scan_training_folders

    module = bench_module("hitl")
    pairs = scan_training_folders([ROOT / "sample_data"])
    base = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
    out = tmp_path / "tuned.safetensors"
    record = module.fine_tune(base, pairs[:2], pairs[2:], out, "fast", 0, minutes=0.01)
    assert out.is_file() and record["train_seconds"] > 0
    assert 0.0 < record["cpu_share"] <= 1.5  # CPU time over the threads' wall time
    assert len(record["epochs_val_dsb_ap"]) == 2  # the base (epoch 0) and the one epoch


def test_rank_sizes_compares_each_ranking_with_the_truth(tmp_path: Path) -> None:
    from tiny_models import save_tiny

    weights = save_tiny("unet", tmp_path / "tiny.safetensors")
    command = [sys.executable, str(ROOT / "bench" / "rank_sizes.py"), "--weights", str(weights)]
    command += ["--folder", str(ROOT / "sample_data"), "--diameters", "off", "default"]
    command += ["--out", str(tmp_path), "--name", "sample"]
    done = run_bench(command)
    report = json.loads((tmp_path / "rank_sizes_sample.json").read_text())
    assert report["images"] == 3 and report["truth_objects"] > 0
    assert [r["diameter"] for r in report["rankings"]] == ["off", None]
    for ranking in report["rankings"]:  # 3 images: the top 3 and any 3 hold every object
        assert sum(t["truth_objects"] for t in ranking["top_10"]) == report["truth_objects"]
        assert ranking["truth_objects_in_top_3"] == report["truth_objects"]
        assert len({t["image"] for t in ranking["top_10"]}) == 3
    low, mid, high = report["random_top_3_truth_objects_5_50_95"]
    assert low == mid == high == report["truth_objects"]
    assert "| off |" in done.stdout


def test_invert_scores_each_image_both_ways(tmp_path: Path) -> None:
    from tiny_models import save_tiny

    weights = save_tiny("unet", tmp_path / "tiny.safetensors")
    command = [sys.executable, str(ROOT / "bench" / "invert.py"), "--weights", str(weights)]
    command += ["--folder", str(ROOT / "sample_data"), "--out", str(tmp_path), "--name", "s"]
    done = run_bench(command)
    report = json.loads((tmp_path / "invert_s.json").read_text())
    (sample,) = report["sets"]
    assert sample["name"] == "sample_data" and sample["images"] == 3
    assert len(sample["per_image_dsb_ap"]) == 3
    ap = sample["metrics"]["dsb_ap"]
    assert ap["inverted_higher"] + ap["inverted_lower"] <= 3
    rows = sample["per_image_dsb_ap"]
    means = [sum(r[k] for r in rows) / len(rows) for k in ("plain", "inverted")]
    assert [ap["plain"], ap["inverted"]] == pytest.approx(means, abs=1e-4)
    assert "| sample_data | 3 |" in done.stdout


def test_polarity_reads_the_samples_and_counts_the_hints(tmp_path: Path) -> None:
    from tiny_models import save_tiny_learned

    trained = [{"name": "dsb_fluorescence", "image": "dsb_fluorescence.png", "role": "train"}]
    weights = save_tiny_learned(tmp_path / "f.safetensors", manifest=trained)
    command = [sys.executable, str(ROOT / "bench" / "polarity.py"), "--no-shared"]
    command += ["--folder", str(ROOT / "sample_data"), "--weights", str(weights)]
    command += ["--save-learned", str(tmp_path / "learned")]
    done = run_bench([*command, "--out", str(tmp_path), "--name", "s"])
    report = json.loads((tmp_path / "polarity_s.json").read_text())
    (read,) = report["reading"]
    assert read["images"] == 3 and read["objects_brighter"] == 1 and read["agree"] == 3
    (model,) = report["models"]
    # the card had no polarity: its one training image was read as training reads it
    assert model["source"] == "manifest re-read"
    assert model["learned"] == {"bright": 1, "dark": 0, "unclear": 0}
    assert model["sets"] == [{"set": "sample_data", "unseen": 2, "hint": 2}]  # brightfield, H&E
    assert model["saved"] == str(tmp_path / "learned" / "f.safetensors")
    assert 0 < read["object_pixels_median"] < 1
    assert "| sample_data | 3 | 1 | " in done.stdout and "| 1 / 2 / 0 | 3 |" in done.stdout
    # the copy carries it in its card, as a model trained today does, and warns by itself
    from napari_cellseg.models import read_card

    saved = read_card(tmp_path / "learned" / "f.safetensors")
    assert saved.learned_polarity() == {"bright": 1, "dark": 0, "unclear": 0}
