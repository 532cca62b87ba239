"""The front door ``iter_predict``: axes resolved once, whole planes or blocks, same labels."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch"))
from batch_helpers import PARAMS, disk_image, save_tiny_unet

from event_helpers import collect
from napari_cellseg.events import Notice, Progress
from napari_cellseg.inference import api, blocks, in_blocks, iter_predict, planes, predict
from napari_cellseg.inference.planes import Prediction
from napari_cellseg.models import load_weights
from napari_cellseg.params import BlockOptions

SMALL = BlockOptions(block_size=96, halo=32, block_pixels=100 * 100)  # 192² is "large"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_weights(save_tiny_unet(tmp_path_factory.mktemp("w") / "u.safetensors"))


@pytest.fixture
def mosaic() -> np.ndarray:
    return np.block([[disk_image(2 * i + j) for j in range(2)] for i in range(2)])  # 192²


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """Which lower-level generator the front door chose, in order."""
    seen: list[str] = []
    real_planes, real_large = planes.iter_predict_planes, blocks.iter_predict_large

    def spy(name, real):
        def run(*args, **kwargs):
            seen.append(name)
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(planes, "iter_predict_planes", spy("planes", real_planes))
    monkeypatch.setattr(blocks, "iter_predict_large", spy("blocks", real_large))
    return seen


def test_a_small_plane_goes_whole_with_the_labels_of_whole_plane_inference(
    model, mosaic, calls
) -> None:
    expected = planes.predict_planes(mosaic, model, PARAMS)
    calls.clear()
    prediction, events = collect(iter_predict(mosaic, model, PARAMS))
    assert calls == ["planes"]
    assert isinstance(prediction, Prediction) and prediction.raw  # reapply works
    assert all(isinstance(e, Progress | Notice) for e in events)
    np.testing.assert_array_equal(prediction.labels, expected.labels)
    assert prediction.params == expected.params  # axes as given (None): recorded unchanged


def test_a_large_plane_goes_block_by_block_with_the_labels_of_block_inference(
    model, mosaic, calls
) -> None:
    params = replace(PARAMS, axes="YX")
    expected, _ = collect(blocks.iter_predict_large(mosaic, model, params, blocks=SMALL))
    calls.clear()
    prediction, events = collect(iter_predict(mosaic, model, PARAMS, blocks=SMALL))
    assert calls == ["blocks"] + ["planes"] * 4  # each block's region goes whole
    np.testing.assert_array_equal(prediction.labels, expected.labels)
    assert prediction.labels.dtype == np.uint16 and prediction.raw == []
    assert [e.done for e in events if isinstance(e, Progress) and e.stage == "blocks"] == [
        1,
        2,
        3,
        4,
    ]
    assert any("96 px blocks with a 32 px margin" in note for note in prediction.notices)
    assert prediction.params.axes is None  # recorded as the caller gave them


def test_the_default_block_options_are_read_at_call_time(model, mosaic, calls, monkeypatch) -> None:
    predict(mosaic, model, PARAMS)
    monkeypatch.setattr(api, "DEFAULT_BLOCKS", SMALL)
    predict(mosaic, model, PARAMS)
    assert calls == ["planes", "blocks"] + ["planes"] * 4
    assert not in_blocks(mosaic.shape, blocks=BlockOptions()) and in_blocks(mosaic.shape)


def test_a_stack_of_large_planes_goes_plane_by_plane_with_given_axes(model, mosaic, calls) -> None:
    stack = np.stack([mosaic, mosaic[::-1]])
    assert not in_blocks(stack.shape, "zyx", SMALL)
    prediction = predict(stack, model, replace(PARAMS, axes="zyx"), blocks=SMALL)
    assert calls == ["planes"] and prediction.labels.shape == stack.shape
    assert prediction.axes == "ZYX" and prediction.params.axes == "zyx"


def test_axes_are_resolved_once_at_the_front_door(model, mosaic, monkeypatch) -> None:
    from napari_cellseg.inference import preprocess

    resolved: list[tuple] = []
    real = preprocess.guess_axes

    def counted(shape, *args, **kwargs):
        resolved.append(tuple(shape))
        return real(shape, *args, **kwargs)

    monkeypatch.setattr(preprocess, "guess_axes", counted)
    predict(mosaic, model, PARAMS, blocks=SMALL)
    assert resolved == [mosaic.shape]  # guessed once; below, the axes are only checked
