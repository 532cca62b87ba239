"""``backend="bf16"``: PyTorch in bfloat16 on the CPU, chosen only where the CPU has the
instructions, with labels close to float32's; channels-last CPU tiles change nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.inference import onnx_backend
from napari_cellseg.inference.api import predict
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.onnx_backend import choose_backend, cpu_bf16_supported
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import BACKENDS, PredictParams
from tiny_models import TINY_MASKRCNN, TINY_UNET

CPU = torch.device("cpu")
SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def _loaded(family: str) -> LoadedModel:
    torch.manual_seed(0)
    args = TINY_UNET if family == "unet" else TINY_MASKRCNN
    model = build_model(family, **args).eval()
    return LoadedModel(model, ModelCard.for_model(family, args), Path("m"), "test")


@pytest.fixture
def with_bf16(monkeypatch):
    """Pretend the CPU has bfloat16 instructions (autocast runs either way, only slower)."""
    monkeypatch.setattr(onnx_backend, "cpu_bf16_supported", lambda: True)


def test_bf16_is_a_backend_choice() -> None:
    assert "bf16" in BACKENDS
    assert PredictParams(backend="bf16").backend == "bf16"
    assert isinstance(cpu_bf16_supported(), bool)


def test_bf16_runs_where_the_cpu_has_the_instructions(with_bf16) -> None:
    assert choose_backend("bf16", "unet", CPU) == ("bf16", None)
    assert choose_backend("bf16", "maskrcnn", CPU) == ("bf16", None)
    assert choose_backend("auto", "unet", CPU)[0] != "bf16"  # never chosen by itself


def test_bf16_falls_back_to_float32_with_a_notice(monkeypatch) -> None:
    monkeypatch.setattr(onnx_backend, "cpu_bf16_supported", lambda: False)
    chosen, note = choose_backend("bf16", "unet", CPU)
    assert chosen == "torch" and "no bfloat16 instructions" in note and "float32" in note
    chosen, note = choose_backend("bf16", "unet", torch.device("cuda"))
    assert chosen == "torch" and "for the CPU" in note
    runner = ModelRunner(_loaded("unet"), CPU, backend="bf16")
    assert not runner.cpu_bf16 and runner.backend_name == "PyTorch"
    assert "no bfloat16 instructions" in runner.notice


def test_unet_probabilities_in_bf16_stay_close_to_float32(with_bf16) -> None:
    loaded = _loaded("unet")
    fast = ModelRunner(loaded, CPU, backend="bf16")
    exact = ModelRunner(loaded, CPU, backend="torch")
    assert fast.cpu_bf16 and fast.backend_name == "PyTorch bfloat16" and fast.notice is None
    x = np.random.default_rng(1).random((2, TINY_UNET["in_channels"], 64, 64), np.float32)
    a, b = fast.unet_probabilities(x, tta=2), exact.unet_probabilities(x, tta=2)
    assert a.dtype == np.float32 and a.shape == b.shape
    assert 0 < np.abs(a - b).max() < 0.05  # computed in bfloat16: close, not identical


def test_maskrcnn_runs_in_bf16(with_bf16) -> None:
    loaded = _loaded("maskrcnn")
    runner = ModelRunner(loaded, CPU, backend="bf16")
    assert runner.cpu_bf16
    tile = np.random.default_rng(2).random((3, 64, 64), np.float32)
    (found,) = runner.maskrcnn_detections([tile])
    assert len(found.scores) == len(found.boxes) == len(found.masks)
    assert all(m.dtype == np.float32 for m in found.masks)


def test_channels_last_cpu_tiles_give_the_same_probabilities() -> None:
    loaded = _loaded("unet")
    runner = ModelRunner(loaded, CPU, backend="torch")
    x = np.random.default_rng(3).random((1, TINY_UNET["in_channels"], 96, 64), np.float32)
    tile = runner._memory_format(torch.from_numpy(x))
    assert tile.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        reference = torch.softmax(loaded.model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(runner.unet_probabilities(x), reference, atol=1e-5)


def test_demo_unet_bf16_labels_match_float32_on_the_samples(with_bf16) -> None:
    """The shipped U-Net in bfloat16: nearly every object the same as in float32."""
    import imageio.v3 as iio

    from napari_cellseg.labels.metrics import matching_at

    weights = SAMPLE / "models" / "unet_dsb.safetensors"
    for name in ("dsb_fluorescence", "dsb_brightfield"):
        image = iio.imread(SAMPLE / "images" / f"{name}.png")
        params = PredictParams(device="cpu", backend="torch", diameter="off")
        exact_run = predict(image, weights, params)
        fast_run = predict(image, weights, replace(params, backend="bf16"))
        assert (exact_run.backend, fast_run.backend) == ("PyTorch", "PyTorch bfloat16")
        exact, fast = exact_run.labels, fast_run.labels
        n = int(exact.max())
        matched = matching_at(exact, fast, 0.5)["tp"]
        assert n > 10 and abs(int(fast.max()) - n) <= max(2, n // 20)
        assert matched >= 0.9 * n
