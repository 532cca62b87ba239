"""Whole slides in a batch: a lazy pyramid level segmented block by block, OME-Zarr labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from batch_helpers import PARAMS, tmp_files, write_tif

from napari_cellseg.batch import run_batch
from napari_cellseg.io.images import read_labels
from napari_cellseg.io.ome_zarr import read_labels_zarr
from napari_cellseg.io.slides import SlideOptions
from napari_cellseg.params import BlockOptions
from slide_files import levels_of, rgb_tissue, write_ome_pyramid, write_ome_zarr

SMALL = BlockOptions(block_pixels=100 * 100, block_size=96, halo=32)
IMAGE = rgb_tissue(256, 320)


def test_a_pyramid_level_segments_like_the_same_pixels_in_a_plain_tiff(tmp_path, weights) -> None:
    write_ome_pyramid(tmp_path / "slide" / "s.ome.tif", IMAGE, compression="jpeg")
    from napari_cellseg.io.slides import open_slide

    level1 = np.asarray(open_slide(tmp_path / "slide" / "s.ome.tif").levels[1])  # as decoded
    write_tif(tmp_path / "plain" / "s.tif", level1, photometric="rgb")
    one = run_batch(
        tmp_path / "slide",
        tmp_path / "out1",
        weights,
        PARAMS,
        blocks=SMALL,
        slide=SlideOptions(level=1),
    )
    two = run_batch(tmp_path / "plain", tmp_path / "out2", weights, PARAMS, blocks=SMALL)
    assert (one.done, two.done) == (1, 1), (one.errors, two.errors)
    a = read_labels(tmp_path / "out1" / "s_labels.tif")
    b = read_labels(tmp_path / "out2" / "s_labels.tif")
    assert a.shape == level1.shape[:2] and a.max() > 0
    np.testing.assert_array_equal(a, b)
    assert one.objects == two.objects


def test_zarr_labels_from_an_ome_zarr_input_are_chunked_and_resume(tmp_path, weights) -> None:
    write_ome_zarr(tmp_path / "in" / "z.ome.zarr", IMAGE)
    out = tmp_path / "out"
    options = {"blocks": SMALL, "labels_format": "zarr", "slide": SlideOptions(pixel_size_um=1.0)}
    summary = run_batch(tmp_path / "in", out, weights, PARAMS, measure=True, **options)
    assert summary.done == 1, summary.errors
    levels = read_labels_zarr(out / "z_labels.ome.zarr")
    assert levels[0].shape == IMAGE[::2, ::2].shape[:2]  # level 1 is 1 µm
    assert levels[0].chunks == (1024, 1024) and np.asarray(levels[0]).max() > 0
    attrs = json.loads((out / "z_labels.ome.zarr" / ".zattrs").read_text())
    assert attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        1.0,
        1.0,
    ]
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["recipe"]["params"]["slide"]["pixel_size_um"] == 1.0
    assert (out / "z_measurements.csv").read_text().count("\n") == summary.objects + 1
    assert not tmp_files(out)
    again = run_batch(tmp_path / "in", out, weights, PARAMS, measure=True, **options)
    assert (again.skipped, again.done) == (1, 0)
    alone = run_batch(tmp_path / "in" / "z.ome.zarr", tmp_path / "o2", weights, PARAMS, **options)
    assert alone.done == 1 and (tmp_path / "o2" / "z_labels.ome.zarr").is_dir()  # not walked


def test_damaged_slides_and_missing_levels_fail_with_one_line(tmp_path, weights) -> None:
    good = write_ome_pyramid(tmp_path / "in" / "good.ome.tif", IMAGE)
    data = good.read_bytes()
    (tmp_path / "in" / "cut.svs").write_bytes(data[: len(data) // 2])
    summary = run_batch(
        tmp_path / "in", tmp_path / "out", weights, PARAMS, blocks=SMALL,
        slide=SlideOptions(level=4), labels_format="zarr",
    )  # fmt: skip
    reasons = dict(summary.errors)
    assert summary.failed == 2
    assert "level 4 does not exist" in reasons[str(good)]
    assert "truncated" in reasons[str(tmp_path / "in" / "cut.svs")]
    assert all("\n" not in r for r in reasons.values())
    assert not list((tmp_path / "out").glob("*_labels*")) and not tmp_files(tmp_path / "out")


@pytest.mark.parametrize("fmt", ["zarr"])
def test_an_ordinary_image_can_get_zarr_labels(tmp_path, weights, fmt) -> None:
    write_tif(tmp_path / "in" / "a.tif", levels_of(IMAGE)[2][..., 0])
    summary = run_batch(tmp_path / "in", tmp_path / "out", weights, PARAMS, labels_format=fmt)
    assert summary.done == 1, summary.errors
    assert read_labels_zarr(tmp_path / "out" / "a_labels.ome.zarr")[0].shape == (64, 80)
