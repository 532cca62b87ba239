"""The weights' moving average (``ema_decay``): validated and saved, and kept across a resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import drain
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.params import TrainParams
from napari_cellseg.training.checkpoints import checkpoint_path_for, load_checkpoint
from napari_cellseg.training.loop import iter_train
from tiny_models import tiny_train_params


def _params(family: str = "unet", **kw) -> TrainParams:
    return tiny_train_params(family, **{"epochs": 1, "ema_decay": 0.5, **kw})


@pytest.mark.parametrize("family", ["unet", "maskrcnn"])
def test_the_saved_weights_are_the_average_not_the_last_step(tmp_path, family) -> None:
    out = tmp_path / "m.safetensors"
    finished = drain(iter_train([sample_data_dir()], out, _params(family)))
    assert finished.best_epoch == 1
    state = load_checkpoint(checkpoint_path_for(out))
    average, raw = state["average"], state["model"]
    assert int(average["n_averaged"]) == 1 + 2  # the start, then each of the 2 steps
    saved = load_file(out)
    floats = [k for k, v in raw.items() if v.is_floating_point() and k in saved]
    assert floats
    for key in floats:
        torch.testing.assert_close(saved[key].float(), average[f"module.{key}"].float())
    moved = [k for k in floats if not torch.equal(raw[k], average[f"module.{k}"])]
    assert moved  # the raw weights went on past the average


def test_a_resumed_run_goes_on_with_the_same_average(tmp_path) -> None:
    out = tmp_path / "m.safetensors"
    drain(iter_train([sample_data_dir()], out, _params()))
    ckpt = checkpoint_path_for(out)
    first = load_checkpoint(ckpt)["average"]
    drain(iter_train(None, None, _params(epochs=2), resume=ckpt))
    second = load_checkpoint(ckpt)["average"]
    assert int(first["n_averaged"]) == 3 and int(second["n_averaged"]) == 5  # not restarted


def test_without_averaging_the_checkpoint_holds_none_and_a_bad_decay_is_refused(tmp_path):
    out = tmp_path / "m.safetensors"
    drain(iter_train([sample_data_dir()], out, _params(ema_decay=0.0)))
    assert load_checkpoint(checkpoint_path_for(out))["average"] is None
    with pytest.raises(CellsegError, match="ema_decay|moving average|Weight averaging"):
        TrainParams(ema_decay=1.0)
