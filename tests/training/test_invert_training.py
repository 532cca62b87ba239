"""Training with ``invert``: the model learns the flipped images, and its card keeps the flip."""

from __future__ import annotations

import numpy as np

from napari_cellseg.events import drain
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import read_card
from napari_cellseg.params import TrainParams
from napari_cellseg.training.loop import iter_train
from napari_cellseg.training.pairs import load_pair, scan_training_folders
from tiny_models import TINY_UNET

BASE = sample_data_dir() / "models" / "unet_dsb.safetensors"


def test_a_fine_tune_with_invert_keeps_it_in_the_card_and_flipping_back_undoes_it(tmp_path):
    params = TrainParams(
        builder_args=TINY_UNET, epochs=1, batch_size=2, patch_size=64, samples_per_epoch=2,
        val_fraction=0.34, device="cpu", invert=True,
    )  # fmt: skip
    once, twice = tmp_path / "once.safetensors", tmp_path / "twice.safetensors"
    drain(iter_train([sample_data_dir()], once, params, init=BASE))
    card = read_card(once)
    assert card.normalisation["invert"] is True
    assert card.normalisation["method"] == read_card(BASE).normalisation["method"]
    pair = scan_training_folders([sample_data_dir()])[0]
    seen, plain = load_pair(pair, card)[0], load_pair(pair, read_card(BASE))[0]
    np.testing.assert_allclose(seen, 1.0 - plain, atol=1e-6)  # what training fed the model
    drain(iter_train([sample_data_dir()], twice, params, init=once))
    assert read_card(twice).normalisation["invert"] is False
