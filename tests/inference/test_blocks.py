"""Segmenting a plane block by block with a model (bounded memory for huge images)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch"))
from batch_helpers import PARAMS, disk_image, save_tiny_unet

from event_helpers import collect
from napari_cellseg.batch.measure import measure_labels
from napari_cellseg.inference import block_reading as plane_reading
from napari_cellseg.inference import blocks as pb
from napari_cellseg.inference import preprocess
from napari_cellseg.inference.planes import predict_planes
from napari_cellseg.labels.metrics import matching_at
from napari_cellseg.models import load_weights, percentile
from napari_cellseg.params import BlockOptions


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_weights(save_tiny_unet(tmp_path_factory.mktemp("w") / "u.safetensors"))


def _mosaic(n: int = 3) -> np.ndarray:
    return np.block([[disk_image(3 * i + j) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("method", ["percentile", "minmax", "dtype-range"])
def test_plane_normalisation_gives_every_crop_the_whole_planes_values(
    model, method, monkeypatch
) -> None:
    monkeypatch.setattr(percentile, "PERCENTILE_SAMPLE_PIXELS", 5000)  # force subsampling
    monkeypatch.setattr(plane_reading, "PERCENTILE_SAMPLE_PIXELS", 5000)
    card = replace(model.card, normalisation={"method": method, "low": 2, "high": 99})
    plane = np.random.default_rng(0).gamma(2.0, 300.0, (250, 230)).astype(np.uint16)
    fixed = plane_reading.plane_normalisation(plane, card, block_size=64)
    kwargs = {"input_channels": 3, "channel_handling": card.channel_handling}
    whole = preprocess.to_model_input(plane, normalisation=card.normalisation, **kwargs)
    again = preprocess.to_model_input(plane, normalisation=fixed, **kwargs)
    np.testing.assert_array_equal(whole, again)
    crop = preprocess.to_model_input(plane[40:90, 100:200], normalisation=fixed, **kwargs)
    np.testing.assert_array_equal(crop, whole[:, 40:90, 100:200])
    assert (fixed["method"] == "range") == (method != "dtype-range")


def test_blockwise_prediction_matches_the_whole_image_with_exact_tables() -> None:
    """The demo U-Net on real nuclei: blocks give the objects of whole-image inference
    (a random tiny model is no judge here: its output changes wholesale with the tiling)."""
    from napari_cellseg.io.images import read_image
    from napari_cellseg.io.samples import get_sample, sample_data_dir

    image = read_image(get_sample("dsb_fluorescence").image_path).data[..., :3]
    image = np.concatenate([image, image[::-1]], axis=0)  # 512 x 256 x 3
    params = replace(PARAMS, tile_size=256, overlap=32)
    weights = sample_data_dir() / "models" / "unet_dsb.safetensors"
    whole = predict_planes(image, weights, params)
    out = np.zeros(image.shape[:2], np.uint32)
    result, events = collect(
        pb.iter_predict_blocks(
            image, weights, out, params, blocks=BlockOptions(200, 64), measure=measure_labels
        )
    )
    assert result.n_objects == out.max() == len(np.unique(out)) - 1 > 40
    assert matching_at(whole.labels, out, 0.5)["f1"] > 0.95
    assert [e.done for e in events if e.stage == "blocks"] == list(range(1, 7))
    # the table and the measurements are in plane coordinates and agree with the labels
    t, m = result.table, result.measurements
    assert t["label"].tolist() == m["label"].tolist() == list(range(1, result.n_objects + 1))
    for row in range(0, result.n_objects, 5):
        ys, xs = np.nonzero(out == t["label"][row])
        assert (t["bbox_y0"][row], t["bbox_x1"][row]) == (ys.min(), xs.max() + 1)
        assert t["area"][row] == m["area"][row] == len(ys)
        assert m["centroid_y"][row] == pytest.approx(ys.mean())
        assert m["mean_intensity_c1"][row] == pytest.approx(image[ys, xs, 1].mean())


def test_a_memory_mapped_stack_is_segmented_plane_by_plane(model, tmp_path) -> None:
    path = tmp_path / "stack.npy"
    stack = np.stack([_mosaic(2), _mosaic(2)[::-1]])
    np.save(path, stack)
    mapped = np.load(path, mmap_mode="r")
    out = np.zeros(stack.shape, np.uint32)
    result, _ = collect(
        pb.iter_predict_blocks(
            mapped,
            model,
            out,
            replace(PARAMS, axes="ZYX"),
            blocks=BlockOptions(block_size=96, halo=96),
        )
    )
    assert len(result.stats) == 2 and result.n_objects == sum(s.objects for s in result.stats)
    assert set(result.table["plane"].tolist()) == {0, 1}
    for z in range(2):  # each plane has its own normalisation, as in whole-stack inference
        own = plane_reading.plane_normalisation(stack[z], model.card)
        assert result.notices == [] and own["method"] == "range"
        assert out[z].max() == result.stats[z].objects
    plane_reading.release_pages(mapped)  # dropping pages of a mapping is harmless
    np.testing.assert_array_equal(mapped, stack)


def test_a_label_array_of_the_wrong_shape_is_refused(model) -> None:
    from napari_cellseg.errors import CellsegError

    with pytest.raises(CellsegError, match="expected"):
        collect(pb.iter_predict_blocks(_mosaic(1), model, np.zeros((5, 5), np.uint32), PARAMS))


def test_a_bright_and_a_dark_half_are_normalised_with_the_whole_planes_statistics() -> None:
    """Right half at a tenth of the brightness: blocks normalised on their own statistics
    brighten the dark half's cells and find about twice the objects whole-plane inference
    finds there (F1 0.1 against the whole plane's labels); with the plane's statistics the
    blocks find the same objects (the tilings differ, so near-threshold cells may differ)."""
    from napari_cellseg.io.images import read_image
    from napari_cellseg.io.samples import get_sample, sample_data_dir

    image = read_image(get_sample("dsb_fluorescence").image_path).data[..., :3]
    dark = (image.astype(np.float32) * 0.1).round().astype(image.dtype)
    plane = np.concatenate([image, dark], axis=1)  # 256 x 512 x 3: bright | dark
    params = replace(PARAMS, tile_size=256, overlap=32)
    weights = sample_data_dir() / "models" / "unet_dsb.safetensors"
    whole = predict_planes(plane, weights, params).labels
    out = np.zeros(plane.shape[:2], np.uint32)
    collect(pb.iter_predict_blocks(plane, weights, out, params, blocks=BlockOptions(200, 64)))
    half = image.shape[1]
    bright, dim = np.s_[:, :half], np.s_[:, half:]
    assert matching_at(whole[bright], out[bright], 0.5)["f1"] > 0.95
    n_whole, n_blocks = (len(np.unique(labels[dim])) - 1 for labels in (whole, out))
    assert n_whole >= 5  # the dark half is not empty
    assert abs(n_blocks - n_whole) <= 1
    assert matching_at(whole[dim], out[dim], 0.5)["f1"] > 0.7
