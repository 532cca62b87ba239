"""Images of one size go through the network together where a pass takes several tiles
(CUDA): each gets the Prediction it gets alone. Simulated on the CPU by letting it pass 4."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from unet_passes import record_passes

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, drain
from napari_cellseg.inference import image_groups, iter_predict, model_runner
from napari_cellseg.inference.image_groups import group_key, images_per_group, iter_predict_images
from napari_cellseg.inference.object_size import fixed_scale
from napari_cellseg.params import PredictParams

PARAMS = PredictParams(diameter="off", backend="torch", batch_size=4, keep_probabilities=True)


def _passes(monkeypatch, per_pass: int) -> list[int]:
    """Let the CPU pass ``per_pass`` tiles at once; record the tiles of every pass."""
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", per_pass)
    return record_passes(monkeypatch)


def _alone(images, model, params):
    return [drain(iter_predict(image, model, params)) for image in images]


def _assert_same(together, alone) -> None:
    assert len(together) == len(alone)
    for mine, theirs in zip(together, alone, strict=True):
        np.testing.assert_array_equal(mine.labels, theirs.labels)
        assert mine.labels.dtype == theirs.labels.dtype
        assert mine.table.keys() == theirs.table.keys()
        for key in theirs.table:
            np.testing.assert_array_equal(mine.table[key], theirs.table[key])
        np.testing.assert_allclose(
            mine.probabilities.astype(np.float32), theirs.probabilities.astype(np.float32),
            atol=2e-3,
        )  # fmt: skip
        assert (mine.axes, mine.diameter, mine.scale) == (
            theirs.axes,
            theirs.diameter,
            theirs.scale,
        )
        assert mine.params == theirs.params
        assert len(mine.raw) == 1 and mine.raw[0].shape == theirs.raw[0].shape
        assert set(mine.timings) >= {"network", "postprocess", "total", "diameter"}


def test_images_of_one_size_get_what_they_get_alone(sample_planes, demo_unet, monkeypatch):
    images = list(sample_planes)
    sizes = _passes(monkeypatch, 1)
    alone = _alone(images, demo_unet, PARAMS)
    assert sizes == [1] * 5
    sizes.clear()
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", 4)
    together = drain(iter_predict_images(images, demo_unet, PARAMS))
    assert sizes == [4, 1]  # images 1-4 in one pass, then image 5
    assert all(p.labels.max() > 10 for p in alone)
    _assert_same(together, alone)


def test_a_fixed_diameter_rescales_the_group_as_each_alone(sample_planes, demo_unet, monkeypatch):
    images = list(sample_planes[:3])
    params = replace(PARAMS, diameter=30.0, tta=2)
    _passes(monkeypatch, 1)
    alone = _alone(images, demo_unet, params)
    assert alone[0].scale != 1.0
    sizes = _passes(monkeypatch, 4)
    together = drain(iter_predict_images(images, demo_unet, params))
    assert sizes == [3, 3]  # two test-time copies of the three images
    _assert_same(together, alone)


def test_onnx_runtime_on_the_cpu_passes_small_images_together(
    sample_planes, demo_unet, monkeypatch
):
    pytest.importorskip("onnxruntime")
    images = list(sample_planes)
    params = PredictParams(diameter="off", batch_size=8)  # ONNX Runtime on the CPU
    sizes = _passes(monkeypatch, 1)
    together = drain(iter_predict_images(images, demo_unet, params))
    assert sizes == [4, 1]  # 4 planes of 256² make one 512² tile
    sizes.clear()
    alone = _alone(images, demo_unet, params)
    assert sizes == [1] * 5
    for mine, theirs in zip(together, alone, strict=True):
        assert mine.backend == theirs.backend == "ONNX Runtime"
        np.testing.assert_array_equal(mine.raw[0], theirs.raw[0])  # bit for bit
        np.testing.assert_array_equal(mine.labels, theirs.labels)


def test_group_keys(sample_planes, demo_unet) -> None:
    card = demo_unet.card
    plane = sample_planes[0]
    key = group_key(plane, card, PARAMS)
    assert key == ((256, 256), "|u1", "YX", 1.0)
    assert group_key(plane.copy(), card, PARAMS) == key
    assert group_key(plane[:200], card, PARAMS) != key  # another shape
    assert group_key(plane.astype(np.uint16), card, PARAMS) != key  # another dtype
    assert group_key(plane, card, replace(PARAMS, diameter=30.0))[3] != 1.0  # another scale
    # alone: a stack, a size estimated per image, more than one tile, a tiles-only family
    assert group_key(sample_planes, card, replace(PARAMS, axes="TYX")) is None
    assert group_key(plane, card, replace(PARAMS, diameter="auto")) is None
    assert group_key(plane, card, replace(PARAMS, diameter=None)) is None  # the card's auto
    assert group_key(plane, card, replace(PARAMS, tile_size=128, overlap=16)) is None
    maskrcnn = replace(card, family="maskrcnn")
    assert group_key(plane, maskrcnn, PARAMS) is None
    assert images_per_group(torch.device("cuda"), maskrcnn, PARAMS) == 1
    assert images_per_group(torch.device("cuda"), card, PARAMS) == 4
    assert images_per_group(torch.device("cpu"), card, PARAMS) == 1
    assert images_per_group(torch.device("cpu"), card, PARAMS, key) == 1  # PyTorch


def test_onnx_runtime_groups_as_many_small_images_as_make_one_tile(demo_unet) -> None:
    pytest.importorskip("onnxruntime")
    card, params = demo_unet.card, PredictParams(diameter="off", batch_size=8)
    cpu = torch.device("cpu")
    assert images_per_group(cpu, card, params) == 8  # the most any size can get

    def key(side: int, scale: float = 1.0) -> tuple:
        return ((side, side), "|u1", "YX", scale)

    assert images_per_group(cpu, card, params, key(128)) == 8  # capped by the batch size
    assert images_per_group(cpu, card, params, key(256)) == 4
    assert images_per_group(cpu, card, params, key(250)) == 4  # padded to 256
    assert images_per_group(cpu, card, params, key(320)) == 2
    assert images_per_group(cpu, card, params, key(512)) == 1
    assert images_per_group(cpu, card, params, key(512, 0.5)) == 4  # at its scale
    assert images_per_group(cpu, card, replace(params, backend="bf16"), key(256)) == 1


def test_grouping_can_be_turned_off(sample_planes, demo_unet, monkeypatch) -> None:
    monkeypatch.setattr(image_groups, "IMAGES_TOGETHER", False)
    assert group_key(sample_planes[0], demo_unet.card, PARAMS) is None
    assert images_per_group(torch.device("cuda"), demo_unet.card, PARAMS) == 1


def test_images_that_cannot_go_together_are_refused(sample_planes, demo_unet) -> None:
    with pytest.raises(CellsegError, match="one by one"):
        drain(iter_predict_images([sample_planes[0], sample_planes[1][:200]], demo_unet, PARAMS))
    with pytest.raises(CellsegError, match="one by one"):
        drain(iter_predict_images([sample_planes[0]], demo_unet, replace(PARAMS, diameter="auto")))
    assert drain(iter_predict_images([], demo_unet, PARAMS)) == []


def test_fixed_scale_says_what_needs_no_estimate(demo_unet) -> None:
    card = demo_unet.card
    assert fixed_scale(card, PredictParams(diameter="off")) == (None, 1.0, "")
    assert fixed_scale(card, PredictParams(diameter="auto")) is None
    assert fixed_scale(card, PredictParams(diameter=None)) is None  # the card knows its size
    diameter, scale, message = fixed_scale(card, PredictParams(diameter=40.0))
    assert diameter == 40.0 and scale == pytest.approx(card.reference_diameter() / 40.0)
    assert message == ""
    tuned = replace(card, default_diameter=30.0)
    diameter, scale, message = fixed_scale(tuned, PredictParams(diameter=None))
    assert diameter == 30.0 and "fine-tuned on" in message
    with pytest.raises(CellsegError):
        fixed_scale(card, PredictParams(diameter="10um"))  # no pixel size


def test_a_fine_tune_says_its_size_once_per_image(sample_planes, demo_unet, monkeypatch):
    tuned = replace(demo_unet, card=replace(demo_unet.card, default_diameter=30.0))
    _passes(monkeypatch, 4)
    events: list = []
    together = drain(
        iter_predict_images(list(sample_planes[:2]), tuned, replace(PARAMS, diameter=None)),
        events.append,
    )
    said = [e.message for e in events if isinstance(e, Notice) and "fine-tuned" in e.message]
    assert len(said) == 1
    assert all(any("fine-tuned" in note for note in p.notices) for p in together)
    assert all(p.diameter == 30.0 for p in together)


def test_each_image_gets_its_own_tables_and_notices(sample_planes, demo_unet) -> None:
    from napari_cellseg.inference.image_groups import split_planes
    from napari_cellseg.inference.planes import predict_planes, vanished_notice

    params = PredictParams(axes="TYX", diameter="off", backend="torch")
    stack = predict_planes(sample_planes[:2], demo_unet, params)
    stack.vanished = [0, 2]  # as if two objects of the second image vanished when rescaled
    stack.notices += ["a note of the model's", vanished_notice(2)]
    first, second = split_planes(stack, "YX", None)
    assert first.notices == ["a note of the model's"]
    assert second.notices == ["a note of the model's", vanished_notice(2)]
    assert (first.vanished, second.vanished) == ([0], [2])
    for k, one in enumerate((first, second)):
        np.testing.assert_array_equal(one.labels, stack.labels[k])
        assert len(one.table["label"]) == int(one.labels.max()) == one.n_objects
        assert set(one.table["plane"]) <= {0}
        assert one.timings["network"] == pytest.approx(stack.timings["network"] / 2)
