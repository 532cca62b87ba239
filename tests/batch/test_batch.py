"""Batch segmentation: outputs, measurements, manifest, resume, recipes, stop, scale-out."""

from __future__ import annotations

import csv
import hashlib
import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import PARAMS, disk_image, save_tiny_unet, tmp_files, write_png, write_tif

from event_helpers import collect
from napari_cellseg.batch import (
    BatchSummary,
    FileResult,
    iter_batch,
    measure_labels,
    run_batch,
)
from napari_cellseg.batch.manifest import RunState
from napari_cellseg.cli import main
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Progress, drain
from napari_cellseg.io.images import read_image, read_labels

GUI_MODULES = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide6", "vispy")


def _tree(root: Path) -> dict[str, Path]:
    """A small input tree: 2 top-level images, 2 in subfolders, plus files to ignore."""
    files = {
        "a.png": write_png(root / "a.png", disk_image(1)),
        "b.tif": write_tif(
            root / "b.tif", disk_image(2), resolution=(2.0, 2.0), resolutionunit="MICROMETER"
        ),
        "sub/c.png": write_png(root / "sub" / "c.png", disk_image(3)),
        "sub/deeper/d.tif": write_tif(root / "sub" / "deeper" / "d.tif", disk_image(4)),
    }
    (root / "notes.txt").write_text("not an image")
    write_png(root / ".hidden.png", disk_image(5))
    return files


def _digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_outputs_mirror_subfolders_with_measurements_and_manifest(tmp_path, weights) -> None:
    files = _tree(tmp_path / "in")
    before = _digest(files.values())
    out = tmp_path / "out"
    summary = run_batch(tmp_path / "in", out, weights, PARAMS, recursive=True, measure=True)
    assert (summary.done, summary.skipped, summary.failed) == (4, 0, 0)
    assert _digest(files.values()) == before  # inputs never modified
    for rel in files:
        stem = rel.rsplit(".", 1)[0]
        labels = read_labels(out / f"{stem}_labels.tif")
        assert labels.shape == (96, 96) and labels.dtype == np.uint16
        assert (out / f"{stem}_measurements.csv").is_file()
    assert not (out / ".hidden_labels.tif").exists() and not tmp_files(out)
    # pixel size travels to the labels and to physical columns
    assert read_image(out / "b_labels.tif").pixel_size_um == pytest.approx((0.5, 0.5))
    with open(out / "b_measurements.csv") as fh:
        b_rows = list(csv.DictReader(fh))
    with open(out / "a_measurements.csv") as fh:
        a_header = next(csv.reader(fh))
    assert a_header[:11] == [
        "label", "area", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1",
        "bbox_x1", "perimeter", "eccentricity", "solidity",
    ]  # fmt: skip
    assert {"mean_intensity_c0", "min_intensity_c0", "max_intensity_c0"} <= set(a_header)
    assert "area_um2" not in a_header  # a PNG carries no pixel size
    assert b_rows, "the tiny model should find objects on the disks"
    for row in b_rows:
        assert float(row["area_um2"]) == pytest.approx(float(row["area"]) * 0.25)
        assert float(row["centroid_x_um"]) == pytest.approx(float(row["centroid_x"]) * 0.5)
    b_labels = read_labels(out / "b_labels.tif")
    assert len(b_rows) == len(np.unique(b_labels)) - 1
    # combined table: one row per object of every image, with its file
    with open(out / "measurements.csv") as fh:
        combined = list(csv.DictReader(fh))
    assert len(combined) == summary.objects
    assert {r["file"] for r in combined} <= set(files)
    assert sum(r["file"] == "b.tif" for r in combined) == len(b_rows)
    # manifest: recipe, every parameter, versions, one entry per file
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["state"] == "complete"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert manifest["recipe"]["weights_sha256"] == sha
    assert manifest["parameters"] == json.loads(json.dumps(PARAMS.to_dict()))
    assert {"python", "numpy", "torch", "scikit-image"} <= set(manifest["libraries"])
    assert set(manifest["files"]) == set(files)
    for rel, entry in manifest["files"].items():
        assert entry["status"] == "done" and entry["seconds"] > 0
        assert entry["labels"] == rel.rsplit(".", 1)[0] + "_labels.tif"
        assert entry["objects"] == len(np.unique(read_labels(out / entry["labels"]))) - 1
    assert manifest["summary"]["objects"] == summary.objects
    assert (out / "errors.csv").read_text() == "file,reason\n"
    assert not (out / "batch_journal.jsonl").exists()


def test_top_level_only_include_exclude_and_name_collisions(tmp_path, weights) -> None:
    _tree(tmp_path / "in")
    write_png(tmp_path / "in" / "b.png", disk_image(6))  # same stem as b.tif
    out = tmp_path / "out"
    summary = run_batch(tmp_path / "in", out, weights, PARAMS)
    assert summary.done == 3
    assert sorted(p.name for p in out.glob("*_labels.tif")) == [
        "a_labels.tif", "b_png_labels.tif", "b_tif_labels.tif",
    ]  # fmt: skip
    assert not (out / "sub").exists()
    only_tif = run_batch(
        tmp_path / "in", tmp_path / "o2", weights, PARAMS, recursive=True,
        include=["*.tif"], exclude=["sub/deeper/*"],
    )  # fmt: skip
    assert only_tif.done == 1 and (tmp_path / "o2" / "b_labels.tif").exists()


def test_an_output_folder_inside_the_input_is_never_read(tmp_path, weights) -> None:
    _tree(tmp_path / "in")
    out = tmp_path / "in" / "results"
    first = run_batch(tmp_path / "in", out, weights, PARAMS, recursive=True)
    again = run_batch(tmp_path / "in", out, weights, PARAMS, recursive=True)
    other = run_batch(tmp_path / "in", tmp_path / "elsewhere", weights, PARAMS, recursive=True)
    assert first.done == again.skipped == other.done == 4  # results/ was not an input
    with pytest.raises(CellsegError, match="must differ from the input"):
        run_batch(tmp_path / "in", tmp_path / "in", weights, PARAMS)
    with pytest.raises(CellsegError, match="input folder is inside the output folder"):
        run_batch(tmp_path / "in" / "sub", tmp_path / "in", weights, PARAMS)


def test_resume_skips_done_files_and_redoes_corrupt_missing_or_changed(tmp_path, weights) -> None:
    files = _tree(tmp_path / "in")
    out = tmp_path / "out"
    assert run_batch(tmp_path / "in", out, weights, PARAMS, recursive=True).done == 4
    reference = {p: read_labels(p) for p in out.rglob("*_labels.tif")}
    again = run_batch(tmp_path / "in", out, weights, PARAMS, recursive=True)
    assert (again.done, again.skipped) == (0, 4)
    corrupt = out / "sub" / "c_labels.tif"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # a partial file
    (out / "a_labels.tif").unlink()
    import os

    st = files["b.tif"].stat()
    os.utime(files["b.tif"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # input changed
    fixed = run_batch(tmp_path / "in", out, weights, PARAMS, recursive=True)
    assert (fixed.done, fixed.skipped, fixed.failed) == (3, 1, 0)
    for path, labels in reference.items():
        np.testing.assert_array_equal(read_labels(path), labels)
    # asking for measurements later redoes the files that lack them
    measured = run_batch(tmp_path / "in", out, weights, PARAMS, recursive=True, measure=True)
    assert measured.done == 4 and (out / "measurements.csv").exists()


def test_a_changed_recipe_is_refused_unless_overwrite(tmp_path, weights) -> None:
    _tree(tmp_path / "in")
    out = tmp_path / "out"
    run_batch(tmp_path / "in", out, weights, PARAMS)
    changed = PARAMS.with_post(prob_threshold=0.6)
    with pytest.raises(CellsegError, match=r"different recipe.*post.prob_threshold 0.7 -> 0.6"):
        run_batch(tmp_path / "in", out, weights, changed)
    other_weights = save_tiny_unet(tmp_path / "other.safetensors", seed=1)
    with pytest.raises(CellsegError, match="weights differ.*--overwrite"):
        run_batch(tmp_path / "in", out, other_weights, PARAMS)
    # device and batch size do not change the labels: same recipe
    same = run_batch(tmp_path / "in", out, weights, replace(PARAMS, batch_size=1))
    assert same.skipped == 2
    replaced = run_batch(tmp_path / "in", out, weights, changed, overwrite=True)
    assert replaced.done == 2
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["recipe"]["params"]["post"]["prob_threshold"] == 0.6
    assert run_batch(tmp_path / "in", out, weights, changed).skipped == 2
    # test-time augmentation changes the labels: another recipe
    with pytest.raises(CellsegError, match=r"parameters differ: tta 1 -> 2"):
        run_batch(tmp_path / "in", out, weights, replace(changed, tta=2))


def test_recipes_without_augmentation_match_those_written_before_the_option() -> None:
    from napari_cellseg.batch.recipe import make_recipe, recipe_hash

    old = {k: v for k, v in PARAMS.to_dict().items() if k != "tta"}  # written before tta
    assert recipe_hash(make_recipe("abc", PARAMS.to_dict())) == recipe_hash(make_recipe("abc", old))
    augmented = replace(PARAMS, tta=4).to_dict()
    assert make_recipe("abc", augmented)["params"]["tta"] == 4


def test_events_stream_and_a_stop_leaves_a_consistent_folder(tmp_path, weights) -> None:
    for i in range(5):
        write_png(tmp_path / "in" / f"img{i}.png", disk_image(i))
    out = tmp_path / "out"
    finished: list[FileResult] = []
    events = []

    def record(event) -> None:
        events.append(event)
        if isinstance(event, FileResult):
            finished.append(event)

    gen = iter_batch(tmp_path / "in", out, weights, PARAMS, should_stop=lambda: len(finished) >= 2)
    summary = drain(gen, record)
    assert isinstance(summary, BatchSummary) and summary.cancelled
    assert not any(isinstance(e, BatchSummary) for e in events)  # returned, not yielded
    assert 2 <= summary.done < 5 and "stopped" in summary.line()
    files_progress = [e for e in events if isinstance(e, Progress) and e.stage == "files"]
    assert [e.done for e in files_progress] == sorted(e.done for e in files_progress)
    assert any(isinstance(e, Progress) and e.stage == "tiles" for e in events)
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["state"] == "stopped" and not tmp_files(out)
    done = {rel for rel, e in manifest["files"].items() if e["status"] == "done"}
    assert done == {p.name.replace("_labels.tif", ".png") for p in out.glob("*_labels.tif")}
    rest = run_batch(tmp_path / "in", out, weights, PARAMS)
    assert (rest.skipped, rest.done) == (summary.done, 5 - summary.done)


def test_closing_the_generator_midway_keeps_records_and_releases_the_folder(
    tmp_path, weights
) -> None:
    for i in range(4):
        write_png(tmp_path / "in" / f"img{i}.png", disk_image(i))
    out = tmp_path / "out"
    gen = iter_batch(tmp_path / "in", out, weights, PARAMS)
    for event in gen:
        if isinstance(event, FileResult) and event.status == "done":
            break
    gen.close()
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["state"] == "stopped" and not tmp_files(out)
    written = {p.name for p in out.glob("*_labels.tif")}
    recorded = {Path(e["labels"]).name for e in manifest["files"].values()}
    assert recorded == written and len(written) >= 1
    rest = run_batch(tmp_path / "in", out, weights, PARAMS)  # the lock was released
    assert rest.skipped == len(written) and rest.done == 4 - len(written)


def test_a_second_concurrent_run_into_the_same_folder_is_refused(tmp_path, weights) -> None:
    _tree(tmp_path / "in")
    out = tmp_path / "out"
    holder = RunState(out, {"format": 1}, {})
    holder.open()
    try:
        with pytest.raises(CellsegError, match="another cellseg batch"):
            run_batch(tmp_path / "in", out, weights, PARAMS)
    finally:
        holder.close("complete", [], [], measure=False)


def test_large_uncompressed_tiffs_are_memory_mapped_with_the_same_result(tmp_path, weights) -> None:
    stack = np.stack([disk_image(7), disk_image(8)])
    write_tif(tmp_path / "in" / "stack.tif", stack, metadata={"axes": "ZYX"})
    loaded = run_batch(tmp_path / "in", tmp_path / "o1", weights, PARAMS, measure=True)
    mapped = run_batch(
        tmp_path / "in", tmp_path / "o2", weights, PARAMS, measure=True, memmap_pixels=100
    )
    assert loaded.done == mapped.done == 1
    a, b = (read_labels(tmp_path / o / "stack_labels.tif") for o in ("o1", "o2"))
    assert a.shape == (2, 96, 96)
    np.testing.assert_array_equal(a, b)
    header = (tmp_path / "o2" / "stack_measurements.csv").read_text().splitlines()[0]
    assert header.startswith("z,label,")


def test_measure_labels_exact_values() -> None:
    labels = np.zeros((10, 12), np.uint16)
    labels[2:4, 3:7] = 1  # 2 x 4 rectangle
    labels[6:9, 6:9] = 5  # 3 x 3 square
    image = np.zeros((10, 12, 2), np.uint8)
    image[..., 0] = 10
    image[6:9, 6:9, 1] = np.arange(9).reshape(3, 3)
    table = measure_labels(labels, image, "YXC", (0.5, 2.0))
    assert table["label"].tolist() == [1, 5]
    assert table["area"].tolist() == [8, 9]
    assert table["centroid_y"].tolist() == [2.5, 7.0]
    assert table["centroid_x"].tolist() == [4.5, 7.0]
    assert [table[k][1] for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")] == [6, 6, 9, 9]
    assert table["mean_intensity_c0"].tolist() == [10, 10]
    assert table["min_intensity_c1"].tolist() == [0, 0]
    assert table["max_intensity_c1"].tolist() == [0, 8]
    assert table["mean_intensity_c1"][1] == 4.0
    assert table["area_um2"].tolist() == [8.0, 9.0]  # 0.5 x 2 um pixels
    assert table["centroid_x_um"].tolist() == [9.0, 14.0]
    assert table["solidity"].tolist() == [1.0, 1.0]


def test_cli_batch_exit_codes_and_summary_line(tmp_path, weights, capsys) -> None:
    _tree(tmp_path / "in")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    out = tmp_path / "out"
    base = ["batch", str(tmp_path / "in"), str(out), "--weights", str(weights)]
    fast = ["--tile", "64", "--overlap", "8", "--threshold", "0.7", "--device", "cpu"]
    assert main([*base, *fast, "--recursive", "--measure"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and "broken.png" in captured.err
    assert "4 done, 0 skipped, 1 failed" in captured.out
    assert main([*base, *fast, "--recursive", "--exclude", "broken*"]) == 0
    assert "0 done, 4 skipped, 0 failed" in capsys.readouterr().out
    assert main([*base, "--tile", "100000"]) == 2
    assert "tile size 100000" in capsys.readouterr().err
    assert main([*base, *fast, "--threshold", "0.5"]) == 2
    assert "different recipe" in capsys.readouterr().err
    assert main([*base, *fast, "--block-size", "32"]) == 2
    assert "block size 32 and halo 256 are out of range" in capsys.readouterr().err


def test_local_cluster_gives_the_same_labels_as_in_process(tmp_path, weights) -> None:
    for i in range(4):
        write_png(tmp_path / "in" / f"img{i}.png", disk_image(10 + i))
    (tmp_path / "in" / "bad.png").write_text("not a png")
    here = run_batch(tmp_path / "in", tmp_path / "here", weights, PARAMS, measure=True)
    spread = run_batch(
        tmp_path / "in", tmp_path / "dask", weights, PARAMS, measure=True,
        scheduler="local", workers=2,
    )  # fmt: skip
    assert (here.done, here.failed) == (spread.done, spread.failed) == (4, 1)
    assert here.objects == spread.objects > 0
    assert [r for _f, r in spread.errors] == [r for _f, r in here.errors]
    for path in (tmp_path / "here").glob("*_labels.tif"):
        np.testing.assert_array_equal(read_labels(path), read_labels(tmp_path / "dask" / path.name))
    assert (tmp_path / "here" / "measurements.csv").read_text() == (
        tmp_path / "dask" / "measurements.csv"
    ).read_text()
    manifest = json.loads((tmp_path / "dask" / "batch_manifest.json").read_text())
    assert manifest["scheduler"] == "local" and manifest["workers"] == 2


def test_an_existing_scheduler_by_address(tmp_path, weights, monkeypatch) -> None:
    from distributed import LocalCluster

    from napari_cellseg.batch import scheduler

    for i in range(3):
        write_png(tmp_path / "in" / f"img{i}.png", disk_image(20 + i))
    here = run_batch(tmp_path / "in", tmp_path / "here", weights, PARAMS)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        summary, events = collect(
            iter_batch(
                tmp_path / "in", tmp_path / "remote", weights, PARAMS,
                scheduler=cluster.scheduler_address,
            )
        )  # fmt: skip
    assert summary.done == 3 and summary.objects == here.objects
    assert any(cluster.scheduler_address in getattr(e, "message", "") for e in events)
    for path in (tmp_path / "here").glob("*_labels.tif"):
        np.testing.assert_array_equal(
            read_labels(path), read_labels(tmp_path / "remote" / path.name)
        )
    monkeypatch.setattr(scheduler, "CONNECT_TIMEOUT", "1s")
    # a port held by a socket that never listens: surely closed (port 9 may be open somewhere)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{held.getsockname()[1]}"
        with pytest.raises(CellsegError, match=f"could not reach {address}"):
            run_batch(tmp_path / "in", tmp_path / "x", weights, PARAMS, scheduler=address)


def test_batch_imports_no_gui_modules() -> None:
    code = (
        "import sys; import napari_cellseg.batch, napari_cellseg.cli.batch; "
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == ""


def test_without_parameters_the_models_own_thresholds_are_used(tmp_path, weights) -> None:
    from napari_cellseg.models import load_weights, read_card, save_weights

    card = read_card(weights)
    card.postprocess = {"prob_threshold": 0.7, "min_size": 7}
    tuned = save_weights(load_weights(weights).model, card, tmp_path / "tuned.safetensors")
    write_png(tmp_path / "in" / "a.png", disk_image(1))
    summary = run_batch(tmp_path / "in", tmp_path / "out", tuned, scheduler="none")
    assert summary.done == 1
    manifest = json.loads((tmp_path / "out" / "batch_manifest.json").read_text())
    post = manifest["parameters"]["post"]
    assert (post["prob_threshold"], post["min_size"]) == (0.7, 7)
    assert post["boundary_threshold"] == 0.5  # what the card leaves out: the defaults


def test_a_mask_rcnn_batch_runs_with_augmentation_and_records_it(tmp_path) -> None:
    from napari_cellseg.events import Notice
    from tiny_models import save_tiny

    weights = save_tiny("maskrcnn", tmp_path / "m.safetensors")
    for i in range(2):
        write_png(tmp_path / "in" / f"img{i}.png", disk_image(i))
    out = tmp_path / "out"
    params = replace(PARAMS, tile_size=128, overlap=16, tta=2)
    events = list(iter_batch(tmp_path / "in", out, weights, params))
    assert not [e for e in events if isinstance(e, Notice) and e.level == "warning"]
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["parameters"]["tta"] == 2
    assert manifest["recipe"]["params"]["tta"] == 2
    with pytest.raises(CellsegError, match=r"parameters differ: tta 2 -> 1"):
        run_batch(tmp_path / "in", out, weights, replace(params, tta=1))


def test_label_images_in_the_input_and_repeated_files_are_left_out(tmp_path, weights) -> None:
    from napari_cellseg.events import Notice

    _tree(tmp_path / "in")
    write_tif(tmp_path / "in" / "a_labels.tif", disk_image(1))  # `predict --out in/` wrote it
    summary, events = collect(iter_batch(tmp_path / "in", tmp_path / "out", weights, PARAMS))
    assert summary.done == 2 and summary.failed == 0  # a.png and b.tif only
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert any("1 file(s) named like label images" in n and "a_labels.tif" in n for n in notes)
    assert not (tmp_path / "out" / "a_labels_labels.tif").exists()
    selected = run_batch(
        tmp_path / "in", tmp_path / "o2", weights, PARAMS, include=["a_labels.tif"]
    )  # asked for by name: segmented
    assert selected.done == 1
    a = tmp_path / "in" / "a.png"
    twice = run_batch([a, a, tmp_path / "in" / "b.tif"], tmp_path / "o3", weights, PARAMS)
    assert twice.done == 2
    assert sorted(p.name for p in (tmp_path / "o3").glob("*_labels.tif")) == [
        "a_labels.tif",
        "b_labels.tif",
    ]


def test_the_one_thread_setting_stays_inside_each_batch_test() -> None:
    import torch

    assert torch.get_num_threads() == 1  # set by tests/batch/conftest.py for this test only
