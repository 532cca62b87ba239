"""The object diameter in batch runs: manifest entries, recipe, resume of older folders."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from batch_helpers import PARAMS, disk_image, write_png, write_tif

from napari_cellseg.batch import run_batch
from napari_cellseg.batch.recipe import make_recipe, recipe_difference, recipe_hash
from napari_cellseg.errors import CellsegError
from napari_cellseg.io.images import read_labels
from napari_cellseg.params import BlockOptions


def _inputs(root):
    write_png(root / "a.png", disk_image(1))  # no pixel size
    write_tif(root / "b.tif", disk_image(2), resolution=(2.0, 2.0), resolutionunit="MICROMETER")


def _manifest(out) -> dict:
    return json.loads((out / "batch_manifest.json").read_text())


def test_the_manifest_records_each_images_diameter_and_scale(tmp_path, weights) -> None:
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    summary = run_batch(tmp_path / "in", out, weights, replace(PARAMS, diameter=36))
    assert (summary.done, summary.failed) == (2, 0)
    manifest = _manifest(out)
    assert manifest["recipe"]["params"]["diameter"] == 36.0
    for entry in manifest["files"].values():
        assert (entry["diameter"], entry["scale"]) == (36.0, 0.5)
        assert read_labels(out / entry["labels"]).shape == (96, 96)
    # micrometres: the TIFF's pixel size (0.5 um) gives 36 px; the PNG has none
    again = run_batch(
        tmp_path / "in", out, weights, replace(PARAMS, diameter="18um"), overwrite=True
    )
    assert (again.done, again.failed) == (1, 1)
    files = _manifest(out)["files"]
    assert "needs the image's pixel size" in files["a.png"]["reason"]
    assert (files["b.tif"]["diameter"], files["b.tif"]["scale"]) == (36.0, 0.5)


def test_the_diameter_is_part_of_the_recipe_and_a_default_one_is_not(tmp_path, weights) -> None:
    old = {k: v for k, v in PARAMS.to_dict().items() if k != "diameter"}  # before the option
    assert recipe_hash(make_recipe("abc", PARAMS.to_dict())) == recipe_hash(make_recipe("abc", old))
    sized = make_recipe("abc", replace(PARAMS, diameter="auto").to_dict())
    assert "diameter None -> 'auto'" in recipe_difference(make_recipe("abc", old), sized)
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    run_batch(tmp_path / "in", out, weights, PARAMS)
    with pytest.raises(CellsegError, match=r"parameters differ: diameter None -> 40.0"):
        run_batch(tmp_path / "in", out, weights, replace(PARAMS, diameter=40))


def test_a_folder_written_before_the_option_resumes(tmp_path, weights) -> None:
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert run_batch(tmp_path / "in", out, weights, PARAMS).done == 2
    manifest = _manifest(out)
    del manifest["parameters"]["diameter"]
    for entry in manifest["files"].values():
        del entry["diameter"], entry["scale"]
    (out / "batch_manifest.json").write_text(json.dumps(manifest))
    resumed = run_batch(tmp_path / "in", out, weights, PARAMS)
    assert (resumed.done, resumed.skipped) == (0, 2)


def test_a_large_image_is_rescaled_block_by_block(tmp_path, weights) -> None:
    big = np.block([[disk_image(i + 2 * j) for j in range(2)] for i in range(2)])
    write_tif(tmp_path / "in" / "big.tif", big)
    out = tmp_path / "out"
    blocks = BlockOptions(block_pixels=100 * 100, block_size=96, halo=32)
    summary = run_batch(tmp_path / "in", out, weights, replace(PARAMS, diameter=36), blocks=blocks)
    assert (summary.done, summary.failed) == (1, 0), summary.errors
    entry = _manifest(out)["files"]["big.tif"]
    assert (entry["diameter"], entry["scale"]) == (36.0, 0.5)
    labels = read_labels(out / "big_labels.tif")
    assert labels.shape == (192, 192)
    assert entry["objects"] == len(set(np.unique(labels).tolist()) - {0})
