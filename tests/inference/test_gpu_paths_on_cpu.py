"""The CUDA-only paths simulated on the CPU: the GPU → CPU out-of-memory fallback, the
autocast dtype, channels-last. (tests/gpu/ runs them on a real GPU: ``pytest -m gpu``.)"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice
from napari_cellseg.inference import plane_network
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.unet_strategy import prepare_model
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams
from tiny_models import TINY_UNET

CUDA = torch.device("cuda")  # a device object only: nothing is put on it here


class FakeRunner:
    """Records where the model is moved (``ModelRunner.move_to``)."""

    def __init__(self) -> None:
        self.moves: list[torch.device] = []

    def move_to(self, device: torch.device) -> None:
        self.moves.append(device)


def _fallback(monkeypatch, raises_on: set[str], state) -> tuple:
    """Run ``run_plane_with_fallback`` with a plane run that raises CUDA out-of-memory on
    the device types in ``raises_on`` (once per call) and returns ``"labels"`` elsewhere."""
    calls: list[tuple[str, int, int]] = []

    def run_plane(runner, x, params, state, checkpoint, plane_number, n_planes):
        calls.append((state.device.type, state.batch_size, state.tile_size))
        if state.device.type in raises_on:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        yield Notice("ran")
        return "labels"

    monkeypatch.setattr(plane_network, "run_plane", run_plane)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    runner, notices, events = FakeRunner(), [], []
    params = PredictParams(tile_size=state.tile_size, overlap=0, batch_size=state.batch_size)
    gen = plane_network.run_plane_with_fallback(
        runner, np.zeros((3, 64, 64), np.float32), params, state, lambda e: e, 0, 1, notices
    )
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    return events, result, calls, runner, notices


def test_out_of_memory_on_the_gpu_continues_on_the_cpu(monkeypatch) -> None:
    state = plane_network.FallbackState(
        batch_size=2, tile_size=2 * plane_network.MIN_TILE, device=CUDA
    )
    events, result, calls, runner, notices = _fallback(monkeypatch, {"cuda"}, state)
    assert result == "labels"
    smallest = plane_network.MIN_TILE
    assert calls == [
        ("cuda", 2, 2 * smallest),
        ("cuda", 1, 2 * smallest),  # the batch halves first,
        ("cuda", 1, smallest),  # then the tile,
        ("cpu", 1, smallest),  # then the model moves to the CPU
    ]
    assert runner.moves == [torch.device("cpu")]
    assert state.device == torch.device("cpu")
    assert notices == [
        "out of memory: retrying with batch size 1",
        f"out of memory: retrying with tiles of {smallest} px",
        "out of memory on the GPU: continuing on the CPU",
    ]
    warnings = [e for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert [w.message for w in warnings] == notices


def test_out_of_memory_on_the_cpu_too_is_one_clear_error(monkeypatch) -> None:
    state = plane_network.FallbackState(batch_size=1, tile_size=plane_network.MIN_TILE, device=CUDA)
    with pytest.raises(CellsegError, match="out of memory even on the CPU"):
        _fallback(monkeypatch, {"cuda", "cpu"}, state)


def test_other_errors_are_not_taken_for_out_of_memory(monkeypatch) -> None:
    def run_plane(*_args):
        raise RuntimeError("CUDA error: device-side assert triggered")
        yield

    monkeypatch.setattr(plane_network, "run_plane", run_plane)
    state = plane_network.FallbackState(batch_size=2, tile_size=128, device=CUDA)
    gen = plane_network.run_plane_with_fallback(
        FakeRunner(), None, PredictParams(), state, lambda e: e, 0, 1, []
    )
    with pytest.raises(RuntimeError, match="device-side assert"):
        next(gen)
    assert state.device == CUDA and state.batch_size == 2  # nothing was "recovered"


def _bare_runner(mixed_precision: bool, device: torch.device) -> ModelRunner:
    """A runner that believes it is on ``device`` (its model is never moved there)."""
    runner = ModelRunner.__new__(ModelRunner)
    runner.device, runner.mixed_precision = device, mixed_precision
    return runner


@pytest.mark.parametrize(("bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float16)])
def test_autocast_on_cuda_uses_bfloat16_where_supported(monkeypatch, bf16, dtype) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    with (
        pytest.warns(UserWarning, match="CUDA is not available")
        if not torch.cuda.is_available()
        else nullcontext()
    ):
        context = _bare_runner(True, CUDA)._autocast()
    assert isinstance(context, torch.autocast)
    assert context.device == "cuda" and context.fast_dtype == dtype


def test_no_autocast_on_the_cpu_or_when_switched_off() -> None:
    loaded = LoadedModel(
        build_model("unet", **TINY_UNET), ModelCard.for_model("unet", TINY_UNET), Path("m"), "t"
    )
    runner = ModelRunner(loaded, torch.device("cpu"), mixed_precision=True)
    assert runner.mixed_precision is False  # only CUDA gets autocast
    assert isinstance(runner._autocast(), nullcontext)
    assert isinstance(_bare_runner(False, CUDA)._autocast(), nullcontext)


def test_channels_last_tiles_on_cuda_and_the_cpu_only() -> None:
    x = torch.zeros(2, 3, 16, 16)
    for device in (CUDA, torch.device("cpu")):  # oneDNN is faster channels-last too
        tile = _bare_runner(True, device)._memory_format(x)
        assert tile.is_contiguous(memory_format=torch.channels_last)
    tile = _bare_runner(False, torch.device("mps"))._memory_format(x)
    assert not tile.is_contiguous(memory_format=torch.channels_last) and tile.is_contiguous()
    conv = torch.nn.Conv2d(3, 4, 3)
    weight = prepare_model(conv, CUDA).weight  # moved in memory layout, not to a device
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert prepare_model(torch.nn.Conv2d(3, 4, 3), torch.device("cpu")).weight.is_contiguous()


def test_cudnn_autotuning_follows_the_setting_on_cuda_only(monkeypatch) -> None:
    from napari_cellseg.inference import unet_strategy

    assert unet_strategy.CUDNN_AUTOTUNE is False  # measured: it cost more than it saved
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    prepare_model(torch.nn.Conv2d(3, 4, 3), torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is True  # the CPU leaves it as found
    prepare_model(torch.nn.Conv2d(3, 4, 3), CUDA)  # a device object only: nothing moves
    assert torch.backends.cudnn.benchmark is False
    monkeypatch.setattr(unet_strategy, "CUDNN_AUTOTUNE", True)
    prepare_model(torch.nn.Conv2d(3, 4, 3), CUDA)
    assert torch.backends.cudnn.benchmark is True
