"""Fault injection: ``kill -9`` a running ``cellseg batch``, run it again, lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from batch_helpers import PARAMS, disk_image, tmp_files, write_png

from napari_cellseg.batch import run_batch
from napari_cellseg.batch.manifest import JOURNAL_NAME
from napari_cellseg.io.images import read_labels

N_IMAGES = 12
SIDE = 256  # large enough that one image takes a noticeable fraction of a second


def journaled(path) -> int:
    """Whole lines in a batch journal (a line being written has no newline yet)."""
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _command(folder, out, weights) -> list[str]:
    return [
        sys.executable, "-m", "napari_cellseg.cli", "batch", str(folder), str(out),
        "--weights", str(weights), "--device", "cpu", "--tile", "64", "--overlap", "8",
        "--threshold", "0.7", "--min-size", "5", "--measure",
    ]  # fmt: skip


def test_kill_9_midway_then_rerun_completes_with_every_output_valid(tmp_path, weights) -> None:
    folder = tmp_path / "in"
    for i in range(N_IMAGES):
        write_png(folder / f"img{i:02d}.png", disk_image(100 + i, SIDE))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see conftest: no thread oversubscription
    process = subprocess.Popen(
        _command(folder, out, weights), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    journal = out / JOURNAL_NAME
    deadline = time.monotonic() + 180
    try:
        # Kill once two files are journaled (whole, flushed lines): what the rerun must keep.
        while journaled(journal) < 2:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the batch did not journal two files in time"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    journaled_before = journaled(journal)
    written_before = len(list(out.glob("*_labels.tif")))
    assert journaled_before >= 2
    assert written_before < N_IMAGES, "the run should have been killed midway"
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["state"] == "running"  # killed: no chance to close the run

    again = subprocess.run(
        _command(folder, out, weights), capture_output=True, text=True, timeout=300, env=env
    )
    assert again.returncode == 0, again.stderr
    # every file was either kept (journaled before the kill) or redone; none twice
    line = again.stdout.strip().splitlines()[-1]
    done, skipped = (int(line.split(f" {w}")[0].split()[-1]) for w in ("done", "skipped"))
    print(f"\nkilled after {written_before} outputs; rerun: {line}")
    assert done + skipped == N_IMAGES and skipped >= journaled_before, line
    assert "0 failed" in line

    names = sorted(p.name for p in out.iterdir())
    expected = sorted(
        [f"img{i:02d}_labels.tif" for i in range(N_IMAGES)]
        + [f"img{i:02d}_measurements.csv" for i in range(N_IMAGES)]
        + ["batch_manifest.json", "errors.csv", "measurements.csv", ".batch.lock"]
    )
    assert names == expected  # no duplicates, no leftovers, no journal, no temp files
    assert not tmp_files(out)
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["state"] == "complete" and len(manifest["files"]) == N_IMAGES
    reference = tmp_path / "reference"
    run_batch(folder, reference, weights, PARAMS, measure=True)
    for rel, entry in manifest["files"].items():
        assert entry["status"] == "done"
        labels = read_labels(out / entry["labels"])
        assert list(labels.shape) == entry["shape"] == [SIDE, SIDE]
        np.testing.assert_array_equal(labels, read_labels(reference / entry["labels"]))
        assert entry["objects"] == len(np.unique(labels)) - 1, rel
    combined = (out / "measurements.csv").read_text().splitlines()
    assert combined == (reference / "measurements.csv").read_text().splitlines()
    assert len(combined) - 1 == sum(e["objects"] for e in manifest["files"].values())
    assert sorted(p.name for p in folder.iterdir()) == [f"img{i:02d}.png" for i in range(N_IMAGES)]
