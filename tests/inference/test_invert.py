"""``invert``: intensities flipped for the model, the same on every path that normalises."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference import predict
from napari_cellseg.inference.block_reading import plane_normalisation
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import load_weights
from napari_cellseg.models.normalise import normalise, with_invert
from napari_cellseg.params import PredictParams

MODEL = sample_data_dir() / "models" / "unet_dsb.safetensors"


@pytest.mark.parametrize(
    "norm",
    [
        {"method": "percentile", "low": 1.0, "high": 99.8},
        {"method": "dtype-range"},
        {"method": "minmax"},
        {"method": "range", "lo": [10.0], "hi": [200.0], "clip": True},
    ],
)
def test_inverted_is_one_minus_the_normalised_image_whole_or_tiled(norm) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 40, 50)).astype(np.uint8)
    plain = normalise(x, norm)
    flipped = normalise(x, with_invert(norm, True))
    np.testing.assert_allclose(flipped, 1.0 - plain, atol=1e-6)
    if norm["method"] in ("percentile", "range"):
        tiled = normalise(x, with_invert(norm, True), tiled=True)
        assert np.array_equal(tiled[..., 5:20, 10:30], np.asarray(tiled)[..., 5:20, 10:30])
        np.testing.assert_allclose(np.asarray(tiled), flipped, atol=0)


def test_imagenet_inverts_before_its_mean_and_std_and_none_refuses() -> None:
    x = np.full((3, 2, 2), 51, np.uint8)
    got = normalise(x, {"method": "imagenet", "invert": True})
    expected = normalise(np.full((3, 2, 2), 204, np.uint8), {"method": "imagenet"})
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with pytest.raises(CellsegError, match="inverting needs a normalisation"):
        normalise(x, {"method": "none", "invert": True})


def test_block_normalisation_keeps_the_cards_invert() -> None:
    card = replace(load_weights(MODEL).card)
    card.normalisation = dict(with_invert(card.normalisation, True))
    plane = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    norm = plane_normalisation(plane, card)
    assert norm["method"] == "range" and norm["invert"] is True


def test_the_run_and_the_card_invert_alike_and_twice_is_not_at_all() -> None:
    image = read_image(sample_data_dir() / "images" / "dsb_brightfield.png").data[..., :3]
    crop = np.ascontiguousarray(image[:192, :192])
    loaded = load_weights(MODEL)
    inverting = replace(loaded, card=replace(loaded.card))
    inverting.card.normalisation = dict(with_invert(loaded.card.normalisation, True))
    params = PredictParams(device="cpu", diameter="off", backend="torch")
    flip = replace(params, invert=True)
    plain = predict(crop, loaded, params).labels
    by_run = predict(crop, loaded, flip).labels
    by_card = predict(crop, inverting, params).labels
    twice = predict(crop, inverting, flip).labels
    assert np.array_equal(by_run, by_card) and np.array_equal(twice, plain)
    assert not np.array_equal(by_run, plain)
