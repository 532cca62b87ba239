"""Planes that each fit in one tile go through the network together where the runner passes
several tiles at once (CUDA): the same labels and maps as plane after plane, batches of the
batch size, the out-of-memory fallback. Simulated on the CPU by letting it pass 4 tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from unet_passes import record_passes

from napari_cellseg.events import Notice, Progress, drain
from napari_cellseg.inference import model_runner, planes
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.plane_network import FallbackState, planes_together
from napari_cellseg.models.weights import load_weights
from napari_cellseg.params import PredictParams

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def stack(sample_planes) -> np.ndarray:
    """Five different real planes of 256², T Y X."""
    return sample_planes


def _passes(monkeypatch) -> list[int]:
    """Record the number of tiles of every network pass."""
    return record_passes(monkeypatch)


def _run(stack, model, monkeypatch, per_pass: int, **kw):
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", per_pass)
    sizes = _passes(monkeypatch)
    params = PredictParams(
        axes="TYX", diameter="off", keep_probabilities=True, backend="torch", **kw
    )
    events: list = []
    prediction = drain(planes.iter_predict_planes(stack, model, params), events.append)
    return prediction, sizes, events


@pytest.mark.parametrize("tta", [1, 2])
def test_planes_together_give_the_plane_by_plane_result(stack, demo_unet, monkeypatch, tta) -> None:
    alone, alone_sizes, _ = _run(stack, demo_unet, monkeypatch, 1, tta=tta)
    together, sizes, events = _run(stack, demo_unet, monkeypatch, 4, tta=tta, batch_size=4)
    assert alone_sizes == [1] * 5 * tta
    assert sizes == [4] * tta + [1] * tta  # planes 1-4 together, then plane 5
    assert alone.labels.max() > 10
    np.testing.assert_allclose(
        together.probabilities.astype(np.float32), alone.probabilities.astype(np.float32),
        atol=2e-3,
    )  # fmt: skip
    np.testing.assert_array_equal(together.labels, alone.labels)
    for key in alone.table:
        np.testing.assert_array_equal(together.table[key], alone.table[key])
    planes_done = [e.done for e in events if isinstance(e, Progress) and e.stage == "planes"]
    assert planes_done == [1, 2, 3, 4, 5]
    messages = {e.message for e in events if isinstance(e, Progress) and e.stage == "tiles"}
    assert messages == {"planes 1-4/5", "planes 5-5/5"}


def test_a_rescaled_stack_goes_together_too(stack, demo_unet, monkeypatch) -> None:
    def run(per_pass):
        monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", per_pass)
        sizes = _passes(monkeypatch)
        params = PredictParams(axes="TYX", diameter="off", backend="torch", batch_size=2)
        return planes.predict_planes(stack, demo_unet, params, scale=1.5), sizes

    (alone, _), (together, sizes) = run(1), run(2)
    assert sizes == [2, 2, 1]  # 384² inputs still fit one 512 px tile
    np.testing.assert_array_equal(together.labels, alone.labels)


def test_planes_larger_than_a_tile_go_one_by_one(stack, demo_unet, monkeypatch) -> None:
    from napari_cellseg.inference.tiling import plan_tiles

    kw = {"tile_size": 128, "overlap": 16, "batch_size": 4}
    _, sizes, _ = _run(stack[:3], demo_unet, monkeypatch, 4, **kw)
    from napari_cellseg.inference.unet_strategy import tile_multiple

    tiles = len(plan_tiles((256, 256), 128, 16, multiple=tile_multiple(demo_unet.card)))
    per_plane = [4] * (tiles // 4) + ([tiles % 4] if tiles % 4 else [])
    assert tiles > 1 and sizes == per_plane * 3  # batched within each plane only


def test_how_many_planes_go_together(demo_unet, monkeypatch) -> None:
    runner = ModelRunner(demo_unet, torch.device("cpu"), backend="torch")
    params = PredictParams(tile_size=512, overlap=64)
    state = FallbackState(batch_size=8, tile_size=512, device=torch.device("cpu"))
    assert planes_together(runner, (256, 256), params, state) == 1  # the CPU: one tile a pass
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", 16)
    assert planes_together(runner, (256, 256), params, state) == 8  # the batch size
    assert planes_together(runner, (512, 512), params, state) == 8
    assert planes_together(runner, (600, 512), params, state) == 1  # two tiles a plane
    state.batch_size = 1
    assert planes_together(runner, (256, 256), params, state) == 1


def test_maskrcnn_planes_go_one_by_one(monkeypatch, tmp_path) -> None:
    from tiny_models import save_tiny

    loaded = load_weights(save_tiny("maskrcnn", tmp_path / "m.safetensors"))
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", 16)
    runner = ModelRunner(loaded, torch.device("cpu"))
    state = FallbackState(batch_size=8, tile_size=512, device=torch.device("cpu"))
    assert planes_together(runner, (128, 128), PredictParams(), state) == 1


def test_out_of_memory_in_a_group_runs_it_again_in_smaller_batches(
    stack, demo_unet, monkeypatch
) -> None:
    alone, _, _ = _run(stack, demo_unet, monkeypatch, 1)
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", 4)
    sizes = _passes(monkeypatch)
    original = ModelRunner._unet_pass

    def short_of_memory(self, batch, transform):
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, batch, transform)

    monkeypatch.setattr(ModelRunner, "_unet_pass", short_of_memory)
    params = PredictParams(axes="TYX", diameter="off", backend="torch", batch_size=4)
    events: list = []
    together = drain(planes.iter_predict_planes(stack, demo_unet, params), events.append)
    warnings = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert warnings == ["out of memory: retrying with batch size 2"]
    assert together.params.batch_size == 2
    assert sizes == [2, 2, 1]  # the group of 4 failed, then ran 2 + 2; plane 5 alone
    np.testing.assert_array_equal(together.labels, alone.labels)
