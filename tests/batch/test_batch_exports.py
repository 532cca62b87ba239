"""``batch --export geojson,roi``: exports beside each label file, resumed like measurements."""

from __future__ import annotations

import json

import numpy as np
from batch_helpers import PARAMS, disk_image, write_png

from napari_cellseg.batch import run_batch
from napari_cellseg.cli import main
from napari_cellseg.io.geojson import read_geojson_labels
from napari_cellseg.io.imagej_rois import read_roi_zip_labels
from napari_cellseg.io.images import read_labels


def test_batch_writes_exports_that_read_back_as_the_labels(tmp_path, weights) -> None:
    write_png(tmp_path / "in" / "a.png", disk_image(1))
    write_png(tmp_path / "in" / "sub" / "b.png", disk_image(2))
    out = tmp_path / "out"
    summary = run_batch(
        tmp_path / "in", out, weights, PARAMS, recursive=True, exports=("geojson", "roi")
    )
    assert summary.done == 2 and summary.failed == 0
    for stem in ("a", "sub/b"):
        labels = read_labels(out / f"{stem}_labels.tif")
        back, _ = read_geojson_labels(out / f"{stem}_labels.geojson")
        np.testing.assert_array_equal(back, labels)
        rois = read_roi_zip_labels(out / f"{stem}_rois.zip", labels.shape)
        np.testing.assert_array_equal(rois, labels)
        doc = json.loads((out / f"{stem}_labels.geojson").read_text())
        if doc["features"]:
            assert "mean_intensity" in doc["features"][0]["properties"]["measurements"]
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["exports"] == ["geojson", "roi"]


def test_a_rerun_asking_for_a_missing_export_redoes_only_that(tmp_path, weights) -> None:
    write_png(tmp_path / "in" / "a.png", disk_image(1))
    out = tmp_path / "out"
    first = run_batch(tmp_path / "in", out, weights, PARAMS, exports=("geojson",))
    again = run_batch(tmp_path / "in", out, weights, PARAMS, exports=("geojson",))
    assert (first.done, again.skipped) == (1, 1)
    more = run_batch(tmp_path / "in", out, weights, PARAMS, exports=("geojson", "roi"))
    assert more.done == 1 and (out / "a_rois.zip").is_file()


def test_cli_batch_export_option(tmp_path, weights, capsys) -> None:
    write_png(tmp_path / "in" / "a.png", disk_image(1))
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "in"), str(out), "--weights", str(weights)]
    assert main([*args, "--export", "roi", "--tile", "64", "--overlap", "8"]) == 0
    assert (out / "a_rois.zip").is_file() and not (out / "a_labels.geojson").exists()
    assert main([*args, "--export", "csv"]) == 2
    assert "unknown export format 'csv'" in capsys.readouterr().err
