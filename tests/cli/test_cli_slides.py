"""cellseg predict / batch on whole slides: --level, --pixel-size, --labels-format zarr."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg.cli import main
from napari_cellseg.io.images import read_labels
from napari_cellseg.io.ome_zarr import read_labels_zarr
from napari_cellseg.models import ModelCard, build_model, save_weights
from slide_files import rgb_tissue, write_ome_pyramid, write_svs
from tiny_models import TINY_UNET

FAST = [
    "--device",
    "cpu",
    "--tile",
    "64",
    "--overlap",
    "8",
    "--threshold",
    "0.7",
    "--min-size",
    "5",
]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "u.safetensors"
    return save_weights(
        build_model("unet", **TINY_UNET), ModelCard.for_model("unet", TINY_UNET), path
    )


def test_predict_a_slide_level_into_ome_zarr(tmp_path, capsys, weights) -> None:
    svs = write_svs(tmp_path / "s.svs", rgb_tissue(256, 384), mpp=0.5, mag=20)
    out = tmp_path / "out"
    args = ["predict", str(svs), "--weights", str(weights), "--out", str(out), *FAST]
    assert main([*args, "--magnification", "10", "--labels-format", "zarr"]) == 0
    line = capsys.readouterr().out
    assert "level 1 for 10x" in line and "s_labels.ome.zarr" in line
    levels = read_labels_zarr(out / "s_labels.ome.zarr")
    assert levels[0].shape == (128, 192)
    assert main([*args, "--pixel-size", "0.5um"]) == 0  # level 0, as a tiled TIFF
    assert read_labels(out / "s_labels.tif").shape == (256, 384)


def test_predict_names_the_file_when_the_level_is_missing(tmp_path, capsys, weights) -> None:
    tif = write_ome_pyramid(tmp_path / "p.ome.tif", rgb_tissue(128, 128))
    args = ["predict", str(tif), "--weights", str(weights), "--out", str(tmp_path / "o"), *FAST]
    assert main([*args, "--level", "7"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p.ome.tif" in err[0] and "level 7 does not exist" in err[0]
    assert not list((tmp_path / "o").iterdir())


def test_batch_accepts_slide_options(tmp_path, capsys, weights) -> None:
    write_ome_pyramid(tmp_path / "in" / "p.ome.tif", rgb_tissue(256, 256))
    args = ["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--weights", str(weights)]
    assert main([*args, *FAST, "--level", "1", "--labels-format", "zarr"]) == 0
    labels = np.asarray(read_labels_zarr(tmp_path / "out" / "p_labels.ome.zarr")[0])
    assert labels.shape == (128, 128)
