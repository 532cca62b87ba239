"""U-Net planes tiled and blended on the network's device (the GPU path), run on the CPU:
the same probability maps and labels as the host path, the same progress, and the host path
whenever the tiles cannot be cut from one padded plane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.events import Progress
from napari_cellseg.inference.api import iter_predict
from napari_cellseg.inference.device_blend import (
    DeviceTileBlender,
    DeviceTiles,
    plane_padding,
)
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.tiling import Tile, TileBlender, pad_to_multiple, plan_tiles
from napari_cellseg.io.images import read_image
from napari_cellseg.params import PredictParams

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
CPU = torch.device("cpu")


def _run(image: np.ndarray, loaded, params: PredictParams, on_device: bool, monkeypatch):
    monkeypatch.setattr(ModelRunner, "device_blend", on_device)
    events: list = []
    gen = iter_predict(image, loaded, params)
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        prediction = stop.value
    tiles = [(e.done, e.total) for e in events if isinstance(e, Progress) and e.stage == "tiles"]
    return prediction, tiles


@pytest.mark.parametrize(
    ("crop", "tile", "tta"),
    [
        ((256, 256), 128, 1),  # 4 inner-bordered tiles, no padding
        ((200, 230), 128, 2),  # padded at the bottom and right edges; a flipped copy
        ((150, 170), 512, 4),  # one padded tile; transposed copies
    ],
)
def test_device_blending_gives_the_host_paths_maps_and_labels(
    demo_unet, monkeypatch, crop, tile, tta
) -> None:
    image = np.asarray(read_image(SAMPLE / "images" / "dsb_fluorescence.png").data)
    image = np.ascontiguousarray(image[: crop[0], : crop[1]])
    params = PredictParams(
        backend="torch", diameter="off", tile_size=tile, overlap=32, tta=tta, batch_size=2
    )
    host, host_tiles = _run(image, demo_unet, params, False, monkeypatch)
    device, device_tiles = _run(image, demo_unet, params, True, monkeypatch)
    assert host.n_objects > 5  # real nuclei, not an empty map
    np.testing.assert_allclose(device.raw[0], host.raw[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(device.labels, host.labels)
    assert device_tiles == host_tiles  # the same progress, copy by copy


def test_the_device_blender_matches_the_host_blender() -> None:
    rng = np.random.default_rng(0)
    tiles = plan_tiles((90, 130), 64, 16)
    host = TileBlender(2, (90, 130), 16)
    device = DeviceTileBlender(2, (90, 130), 16, CPU)
    for tile in tiles:
        values = rng.random((2, *tile.shape), dtype=np.float32)
        host.add(tile, values)
        device.add(tile, torch.from_numpy(values))
    np.testing.assert_allclose(device.result(), host.result(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("height", "width"), [(37, 45), (64, 70), (1, 40), (33, 100)])
def test_tiles_cut_from_the_padded_plane_equal_tiles_padded_alone(height, width) -> None:
    from napari_cellseg.inference.device_blend import _pad_plane

    x = np.random.default_rng(1).random((3, height, width), dtype=np.float32)
    tiles = (
        plan_tiles((height, width), 32, 8, multiple=32) if height > 1 else [Tile(0, 0, 1, width)]
    )
    padding = plane_padding((height, width), tiles, 32)
    assert padding is not None
    plane = _pad_plane(x, padding)
    for tile in tiles:
        alone, _ = pad_to_multiple(tile.view(x), 32)
        cut = plane[:, tile.y0 : tile.y0 + alone.shape[1], tile.x0 : tile.x0 + alone.shape[2]]
        np.testing.assert_array_equal(cut, alone)


def test_tiles_padded_inside_the_plane_go_the_host_way() -> None:
    class Runner:  # never called: the plan is refused before any work
        device = CPU

    tiles = [Tile(0, 0, 50, 64, inner_bottom=True), Tile(40, 0, 100, 64, inner_top=True)]
    assert plane_padding((100, 64), tiles, 32) is None
    assert DeviceTiles.of(Runner(), np.zeros((3, 100, 64), np.float32), [tiles], 32) is None
    mixed = [[Tile(0, 0, 64, 64), Tile(0, 64, 32, 128)]]  # one batch, two tile shapes
    assert DeviceTiles.of(Runner(), np.zeros((3, 64, 128), np.float32), mixed, 32) is None


def test_device_blending_is_the_default_on_cuda_with_pytorch_only(demo_unet) -> None:
    runner = ModelRunner(demo_unet, CPU, backend="torch")
    assert not runner.blends_on_device  # the CPU keeps the host path
    runner.device = torch.device("cuda")  # a device object only: nothing is put on it
    assert runner.blends_on_device
    runner.onnx = object()  # ONNX Runtime runs on the CPU, in numpy
    assert not runner.blends_on_device
