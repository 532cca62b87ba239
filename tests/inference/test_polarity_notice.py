"""A prediction warns once when the image is the other way round from the model's training."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg.events import Notice, drain
from napari_cellseg.inference import iter_predict
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.params import PredictParams
from tiny_models import save_tiny_learned


@pytest.fixture(scope="module")
def fluo_model(tmp_path_factory):
    """A tiny U-Net whose card says it learned bright objects on a dark background."""
    return save_tiny_learned(tmp_path_factory.mktemp("polarity") / "fluo.safetensors")


def _warnings(image, model, **kw) -> tuple[list[str], list[str]]:
    events: list = []
    params = PredictParams(device="cpu", diameter="off", **kw)
    prediction = drain(iter_predict(image, model, params), events.append)
    said = [e.message for e in events if isinstance(e, Notice) and "Invert" in e.message]
    assert all(e.level == "warning" for e in events if isinstance(e, Notice) and e.message in said)
    return said, [n for n in prediction.notices if "Invert" in n]


def _image(name: str) -> np.ndarray:
    return np.asarray(read_image(sample_data_dir() / "images" / f"{name}.png").data)


def test_brightfield_with_a_fluorescence_model_warns_once(fluo_model) -> None:
    said, kept = _warnings(_image("dsb_brightfield"), fluo_model)
    assert len(said) == 1 and "turn Invert on" in said[0]
    assert kept == said  # the Prediction keeps it for the dock and the batch note


def test_no_warning_when_the_image_matches_or_invert_fixes_it(fluo_model) -> None:
    assert _warnings(_image("dsb_fluorescence"), fluo_model) == ([], [])
    assert _warnings(_image("dsb_brightfield"), fluo_model, invert=True) == ([], [])


def test_a_stack_is_read_on_its_first_plane_and_warns_once(fluo_model) -> None:
    plane = _image("dsb_he")[..., :3]
    said, _ = _warnings(np.stack([plane, plane]), fluo_model, axes="ZYXC")
    assert len(said) == 1


def test_models_without_a_recorded_polarity_say_nothing() -> None:
    demo = sample_data_dir() / "models" / "unet_dsb.safetensors"
    assert _warnings(_image("dsb_brightfield")[:128, :128], demo) == ([], [])
