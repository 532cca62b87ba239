"""What the CPU holds at once while a plane goes through the network: its input normalised
tile by tile (never the whole plane in float32) and one pass's tiles at a time, with the
same maps and labels as the whole plane normalised at once and whole batches cut."""

from __future__ import annotations

import numpy as np
import pytest
from unet_passes import record_passes

from napari_cellseg.inference import planes, unet_strategy
from napari_cellseg.inference.api import predict
from napari_cellseg.inference.tiling import plan_tiles
from napari_cellseg.inference.unet_strategy import HostTiles
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import get_sample
from napari_cellseg.models.normalise import to_model_input
from napari_cellseg.models.percentile import TiledInput
from napari_cellseg.params import PredictParams


def _image(key: str) -> np.ndarray:
    return np.asarray(read_image(get_sample(key).image_path).data)[..., :3]


@pytest.mark.parametrize("key", ["dsb_he", "dsb_fluorescence", "dsb_brightfield"])
def test_tiles_of_the_tiled_input_equal_the_whole_planes(demo_unet, key: str) -> None:
    card = demo_unet.card
    options = {
        "input_channels": card.input_channels,
        "channel_handling": card.channel_handling,
        "normalisation": card.normalisation,
    }
    image = _image(key)
    whole = to_model_input(image, **options)
    lazy = to_model_input(image, tiled=True, **options)
    assert isinstance(lazy, TiledInput) and isinstance(whole, np.ndarray)
    assert lazy.shape == whole.shape and lazy.dtype == whole.dtype == np.float32
    for tile in plan_tiles(image.shape[:2], 96, 16, multiple=32):
        np.testing.assert_array_equal(tile.view(lazy), tile.view(whole))  # bit for bit
        crop = lazy[:, tile.y0 : tile.y1, tile.x0 : tile.x1]
        np.testing.assert_array_equal(crop, whole[:, tile.y0 : tile.y1, tile.x0 : tile.x1])
    np.testing.assert_array_equal(np.asarray(lazy), whole)
    np.testing.assert_array_equal(lazy[1, ::2], whole[1, ::2])  # other indices: the array
    unchanged = _image(key)
    np.testing.assert_array_equal(image, unchanged)  # the image itself is never written


def test_fixed_ranges_go_tile_by_tile_too(demo_unet) -> None:
    """Block by block a plane gets ``range`` normalisation (its whole-plane percentiles)."""
    from napari_cellseg.inference.block_reading import plane_normalisation

    image = _image("dsb_brightfield")
    fixed = plane_normalisation(image, demo_unet.card)
    assert fixed["method"] == "range"
    options = {"input_channels": 3, "channel_handling": "rgb", "normalisation": fixed}
    whole = to_model_input(image, **options)
    lazy = to_model_input(image, tiled=True, **options)
    assert isinstance(lazy, TiledInput)
    for tile in plan_tiles(image.shape[:2], 200, 32, multiple=32):
        np.testing.assert_array_equal(tile.view(lazy), tile.view(whole))
    clipped = {**fixed, "lo": [50.0, 60.0, 70.0], "hi": [60.0, 60.0, 200.0], "clip": True}
    options["normalisation"] = clipped  # a flat channel (hi == lo) and clipping
    np.testing.assert_array_equal(
        np.asarray(to_model_input(image, tiled=True, **options)), to_model_input(image, **options)
    )
    assert not to_model_input(image, **options)[1].any()


def test_other_normalisations_stay_arrays() -> None:
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    x = to_model_input(
        grey, input_channels=1, channel_handling="grey",
        normalisation={"method": "dtype-range"}, tiled=True,
    )  # fmt: skip
    assert isinstance(x, np.ndarray) and x.shape == (1, 4, 5)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_maps_and_labels_unchanged_and_the_plane_never_whole(
    demo_unet, monkeypatch, backend: str
) -> None:
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    image = _image("dsb_brightfield")  # 512², cut into 4 tiles of 288²
    params = PredictParams(
        diameter="off", backend=backend, tile_size=288, overlap=32, batch_size=4, tta=2
    )
    stacked: list[int] = []
    real_stack = HostTiles.stack
    monkeypatch.setattr(
        HostTiles,
        "stack",
        lambda self, batch: stacked.append(len(batch)) or real_stack(self, batch),
    )

    def whole_plane(self, *_args, **_kwargs):
        raise AssertionError("the whole plane was normalised at once")

    with monkeypatch.context() as patched:
        patched.setattr(TiledInput, "__array__", whole_plane)
        now = predict(image, demo_unet, params)
    # one 512² tile's pixels a pass on the CPU (one 288² tile on PyTorch, three on ONNX
    # Runtime, :func:`.model_runner.tiles_per_pass`): only those are cut at a time
    assert stacked == ([1, 1, 1, 1] if backend == "torch" else [3, 1])
    stacked.clear()
    real_input = planes.to_model_input
    monkeypatch.setattr(
        planes, "to_model_input", lambda *a, **k: real_input(*a, **{**k, "tiled": False})
    )
    monkeypatch.setattr(unet_strategy, "in_passes", lambda runner, batches, multiple=32: batches)
    before = predict(image, demo_unet, params)  # the whole plane, whole batches
    assert stacked == [4]
    np.testing.assert_array_equal(now.raw[0], before.raw[0])
    np.testing.assert_array_equal(now.labels, before.labels)
    assert now.n_objects > 20


def test_small_onnx_tiles_still_go_together(demo_unet, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    image = _image("dsb_brightfield")
    sizes = record_passes(monkeypatch)
    params = PredictParams(diameter="off", backend="onnx", tile_size=160, overlap=32)
    predict(image, demo_unet, params)
    # 3 × 3 tiles of 160² (each under one 512² tile's pixels): passes of the batch size, 4
    assert sizes == [4, 4, 1]
