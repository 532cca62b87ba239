"""``--tune-thresholds`` after training: a model whose best thresholds are not its card's.

The known-output network (tests/known_output_model.py) merges the two cells at the default
boundary threshold (0.5) and splits them at 0.1 or below, so tuning must store a lower one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from known_output_model import TrainableKnownNet, known_model, write_two_cells_folder
from napari_cellseg.events import Notice, Progress, TrainingFinished, drain
from napari_cellseg.models import read_card
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import TrainParams
from napari_cellseg.training import loop, tuning
from napari_cellseg.training.loop import iter_train

PARAMS = {
    "family": "unet",
    "epochs": 1,
    "batch_size": 2,
    "patch_size": 64,
    "samples_per_epoch": 2,
    "device": "cpu",
    "seed": 3,
    "val_tile_size": 64,
    "object_diameter": 0,  # no rescaling: the known output is defined on the image's grid
}


@pytest.fixture
def cells(tmp_path) -> Path:
    return write_two_cells_folder(tmp_path / "cells")


@pytest.fixture
def known_weights(monkeypatch):
    """Reading a weight file back gives the known network with the file's own card."""

    def load(path, **_kw):
        return LoadedModel(TrainableKnownNet().eval(), read_card(path), Path(path), "test")

    monkeypatch.setattr(tuning, "load_weights", load)


def _assert_tuned(out: Path) -> None:
    card = read_card(out)
    assert set(card.postprocess) >= {"boundary_threshold"}
    assert card.postprocess["boundary_threshold"] <= 0.1 < 0.5  # split, not merged
    assert card.post_params().boundary_threshold <= 0.1
    record = card.provenance["postprocess_tuning"]
    assert record["data"] == "1 validation images" and record["n_images"] == 1
    assert record["base_score"] == 0.0 and record["score"] > 0.8


def test_fit_stores_the_tuned_thresholds_in_the_card(tmp_path, cells, known_weights) -> None:
    out = tmp_path / "tuned.safetensors"
    events: list = []
    params = TrainParams(**PARAMS, tune_thresholds=True)
    gen = iter_train([cells], out, params, model=TrainableKnownNet(), card=known_model().card)
    finished = drain(gen, events.append)
    assert isinstance(finished, TrainingFinished)
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert notes[-1].startswith("thresholds tuned on the validation images: boundary_threshold")
    assert "(DSB AP 0.000 → " in notes[-1]
    _assert_tuned(out)


def test_cli_train_tune_thresholds_stores_them(
    tmp_path, cells, known_weights, monkeypatch, capsys
) -> None:
    from napari_cellseg.cli import main

    monkeypatch.setattr(
        loop,
        "starting_model",
        lambda *a: (TrainableKnownNet(), known_model().card, []),
    )
    out = tmp_path / "cli.safetensors"
    args = ["train", "--data", str(cells), "--model", "unet", "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", "2", "--patch-size", "64"]
    args += ["--samples-per-epoch", "2", "--device", "cpu", "--tune-thresholds"]
    args += ["--object-diameter", "none"]  # the known output is defined on the image grid
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "note: thresholds tuned on the validation images: boundary_threshold" in err
    _assert_tuned(out)


def test_stopping_during_tuning_stores_nothing(tmp_path, cells, known_weights) -> None:
    out = tmp_path / "stopped.safetensors"
    params = TrainParams(**PARAMS, tune_thresholds=True)
    gen = iter_train([cells], out, params, model=TrainableKnownNet(), card=known_model().card)
    tuning = False
    for event in gen:
        tuning = tuning or (isinstance(event, Notice) and event.message.startswith("tuning"))
        if tuning and isinstance(event, Progress) and event.stage in ("tuning", "tiles"):
            break  # inside the tuning run (an image or a tile of it): the weights are saved
    else:
        raise AssertionError("tuning never started")
    gen.close()
    card = read_card(out)  # still a valid weight file
    assert card.postprocess == {}
    assert "postprocess_tuning" not in card.provenance
    assert card.provenance["source"] == "napari-cellseg training"
    tensors = load_file(out)  # the tensors are all there
    assert set(tensors) == set(TrainableKnownNet().state_dict())
