"""Z-stacks and time-lapses in ``cellseg predict`` / ``batch``: the flags, recipe and labels."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from batch_helpers import PARAMS, disk_image, write_tif

from napari_cellseg.batch import iter_batch
from napari_cellseg.batch.recipe import make_recipe, recipe_difference, recipe_hash
from napari_cellseg.cli import main
from napari_cellseg.cli.app import build_parser
from napari_cellseg.cli.predict import params_from_args
from napari_cellseg.events import drain
from napari_cellseg.inference.joining import with_file_z_spacing
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.io.pixel_size import file_z_spacing
from napari_cellseg.labels.stitching import link_frames, stitch_planes
from napari_cellseg.models import ModelCard
from tiny_models import TINY_UNET


def stack() -> np.ndarray:
    """Three planes of the same disks, a little noisier each plane."""
    base = disk_image(0).astype(np.int16)
    rng = np.random.default_rng(1)
    return np.stack([np.clip(base + rng.integers(-8, 8, base.shape), 0, 255) for _ in range(3)])


def test_the_flags_reach_the_parameters() -> None:
    card = ModelCard.for_model("unet", TINY_UNET)
    argv = ["predict", "a.tif", "--weights", "w", "--out", "o"]
    plain = params_from_args(build_parser().parse_args(argv), card)
    assert not plain.stitch_3d and not plain.link_time and plain.max_gap == 2
    flags = ["--stitch-3d", "--link-time", "--stitch-iou", "0.4", "--max-gap", "0"]
    args = build_parser().parse_args([*argv, *flags, "--z-spacing", "3.5"])
    params = params_from_args(args, card)
    assert (params.stitch_3d, params.link_time, params.stitch_iou) == (True, True, 0.4)
    assert (params.max_gap, params.z_spacing) == (0, 3.5)
    batch = build_parser().parse_args(["batch", "in", "out", "--weights", "w", "--stitch-3d"])
    assert params_from_args(batch, card).stitch_3d


def test_recipes_without_stack_options_match_those_written_before_them() -> None:
    old = {k: v for k, v in PARAMS.to_dict().items() if k in PARAMS.__dataclass_fields__}
    for name in ("stitch_3d", "link_time", "stitch_iou", "max_gap", "z_spacing"):
        del old[name]
    assert recipe_hash(make_recipe("abc", PARAMS.to_dict())) == recipe_hash(make_recipe("abc", old))
    # a gap without linking changes nothing; stitching does
    no_link = replace(PARAMS, max_gap=5).to_dict()
    assert recipe_hash(make_recipe("abc", no_link)) == recipe_hash(make_recipe("abc", old))
    stitched = make_recipe("abc", replace(PARAMS, stitch_3d=True, z_spacing=2.0).to_dict())
    assert stitched["params"]["stitch_3d"] and stitched["params"]["z_spacing"] == 2.0
    assert "max_gap" not in stitched["params"]
    assert "stitch_3d False -> True" in recipe_difference(make_recipe("abc", old), stitched)


def test_predict_stitches_a_z_stack(tmp_path, capsys, weights) -> None:
    image = write_tif(tmp_path / "stack.tif", stack().astype(np.uint8), photometric="minisblack")
    common = ["--weights", str(weights), "--axes", "ZYX", "--device", "cpu", "--tile", "64",
              "--overlap", "8", "--threshold", "0.7", "--min-size", "5"]  # fmt: skip
    assert main(["predict", str(image), "--out", str(tmp_path / "plain"), *common]) == 0
    flat = read_labels(tmp_path / "plain" / "stack_labels.tif")
    assert flat.shape == (3, 96, 96) and flat.max() > 0
    argv = ["predict", str(image), "--out", str(tmp_path / "3d"), *common, "--stitch-3d"]
    assert main(argv) == 0
    joined = read_labels(tmp_path / "3d" / "stack_labels.tif")
    np.testing.assert_array_equal(joined, stitch_planes(flat.astype(np.int64)))
    assert f"{joined.max()} objects" in capsys.readouterr().out


def test_batch_links_a_time_lapse(tmp_path, weights) -> None:
    write_tif(tmp_path / "in" / "movie.tif", stack().astype(np.uint8), photometric="minisblack")
    params = replace(PARAMS, axes="TYX")
    drain(iter_batch(tmp_path / "in", tmp_path / "plain", weights, params))
    drain(iter_batch(tmp_path / "in", tmp_path / "out", weights, replace(params, link_time=True)))
    flat = read_labels(tmp_path / "plain" / "movie_labels.tif")
    linked = read_labels(tmp_path / "out" / "movie_labels.tif")
    assert flat.max() > 0 and linked.max() < sum(int(f.max()) for f in flat)  # ids kept
    np.testing.assert_array_equal(linked, link_frames(flat.astype(np.int64)))
    manifest = json.loads((tmp_path / "out" / "batch_manifest.json").read_text())
    assert manifest["recipe"]["params"]["link_time"] is True


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_a_bad_iou_is_refused_in_one_line(tmp_path, capsys, weights, value) -> None:
    image = write_tif(tmp_path / "a.tif", stack().astype(np.uint8), photometric="minisblack")
    argv = ["predict", str(image), "--weights", str(weights), "--out", str(tmp_path / "o")]
    assert main([*argv, "--stitch-3d", "--stitch-iou", value]) == 2
    assert "stitch_iou must be in (0, 1]" in capsys.readouterr().err


def test_the_z_step_comes_from_the_file(tmp_path, weights) -> None:
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0}
    image = write_tif(tmp_path / "stack.ome.tif", stack().astype(np.uint8), metadata=meta)
    imagej = write_tif(
        tmp_path / "ij.tif", stack().astype(np.uint8), imagej=True, resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"},
    )  # fmt: skip
    assert file_z_spacing(image, (0.5, 0.5)) == 4.0 and file_z_spacing(imagej, (0.5, 0.5)) == 3.0
    assert file_z_spacing(tmp_path / "a.png", (0.5, 0.5)) is None
    read = read_image(image)
    assert with_file_z_spacing(replace(PARAMS, stitch_3d=True), read).z_spacing == 4.0
    assert with_file_z_spacing(PARAMS, read).z_spacing is None  # not stitching
    given = replace(PARAMS, stitch_3d=True, z_spacing=1.0)
    assert with_file_z_spacing(given, read).z_spacing == 1.0  # --z-spacing wins
    common = ["--weights", str(weights), "--device", "cpu", "--tile", "64", "--overlap", "8",
              "--threshold", "0.7", "--min-size", "5"]  # fmt: skip
    assert main(["predict", str(image), "--out", str(tmp_path / "plain"), *common]) == 0
    assert main(["predict", str(image), "--out", str(tmp_path / "3d"), *common, "--stitch-3d"]) == 0
    flat = read_labels(tmp_path / "plain" / "stack_labels.tif").astype(np.int64)
    joined = read_labels(tmp_path / "3d" / "stack_labels.tif")
    np.testing.assert_array_equal(joined, stitch_planes(flat, z_spacing=4.0))
