"""``PredictParams.compile``: torch.compile on the PyTorch path, the same labels, and a run
that goes on without it (saying so) where it cannot compile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.batch.recipe import make_recipe
from napari_cellseg.events import Notice, drain
from napari_cellseg.inference import model_runner
from napari_cellseg.inference.api import iter_predict, predict
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams
from tiny_models import TINY_MASKRCNN, TINY_UNET

PARAMS = PredictParams(device="cpu", diameter="off", backend="torch", tile_size=64, overlap=16)


@pytest.fixture(autouse=True)
def _fresh_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_runner, "_COMPILE_FAILED", {})
    monkeypatch.setattr(model_runner, "COMPILE_BACKEND", "eager")  # no code generation


def _loaded(family: str, args: dict) -> LoadedModel:
    torch.manual_seed(0)
    model = build_model(family, **args).eval()
    return LoadedModel(model, ModelCard.for_model(family, args), Path("m"), "test")


def _image() -> np.ndarray:
    return np.random.default_rng(3).random((96, 80), np.float32)


@pytest.mark.parametrize(("family", "args"), [("unet", TINY_UNET), ("maskrcnn", TINY_MASKRCNN)])
def test_a_compiled_network_gives_the_same_labels(family: str, args: dict) -> None:
    loaded = _loaded(family, args)
    eager = predict(_image(), loaded, PARAMS)
    compiled = predict(_image(), loaded, replace(PARAMS, compile=True))
    assert eager.backend == "PyTorch" and compiled.backend == "PyTorch, compiled"
    np.testing.assert_array_equal(compiled.labels, eager.labels)


def test_onnx_runtime_ignores_compile() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    loaded = _loaded("unet", TINY_UNET)
    runner = model_runner.ModelRunner(loaded, torch.device("cpu"), backend="onnx", compile=True)
    assert runner.onnx is not None and runner.compiled is None
    assert runner.backend_name == "ONNX Runtime"


def test_a_network_that_will_not_compile_runs_without_it_and_says_so(monkeypatch) -> None:
    tried = []

    def broken(module, **kwargs):
        tried.append(module)

        def run(*args, **kw):
            raise RuntimeError("InductorError: no working C++ compiler\nlong trace")

        return run

    monkeypatch.setattr(model_runner.torch, "compile", broken)
    loaded = _loaded("unet", TINY_UNET)
    eager = predict(_image(), loaded, PARAMS)
    events: list = []
    result = drain(iter_predict(_image(), loaded, replace(PARAMS, compile=True)), events.append)
    said = [e.message for e in events if isinstance(e, Notice)]
    expected = "torch.compile could not compile this model (InductorError: no working C++ "
    assert any(m.startswith(expected) and m.endswith("running without it") for m in said)
    assert result.backend == "PyTorch"
    np.testing.assert_array_equal(result.labels, eager.labels)
    again = predict(_image(), loaded, replace(PARAMS, compile=True))
    assert len(tried) == 1  # not tried again in this process
    assert any("could not compile" in n for n in again.notices)


def test_compile_is_a_flag_of_predict_and_batch_and_off_leaves_the_recipe_as_it_was() -> None:
    from napari_cellseg.cli.app import build_parser
    from napari_cellseg.cli.predict import params_from_args

    card = ModelCard.for_model("unet", TINY_UNET)
    for base in (["predict", "a.png", "--out", "o"], ["batch", "in/", "o"]):
        base = [*base, "--weights", "w.safetensors"]
        args = build_parser().parse_args([*base, "--compile"])
        assert params_from_args(args, card).compile is True
        assert params_from_args(build_parser().parse_args(base), card).compile is False
    off = make_recipe("sha", PredictParams().to_dict())
    assert "compile" not in off["params"]
    assert make_recipe("sha", PredictParams(compile=True).to_dict())["params"]["compile"] is True


@pytest.mark.slow
def test_inductor_compiles_the_tiny_unet_on_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(model_runner, "COMPILE_BACKEND", "inductor")
    loaded = _loaded("unet", TINY_UNET)
    eager = predict(_image(), loaded, PARAMS)
    compiled = predict(_image(), loaded, replace(PARAMS, compile=True, keep_probabilities=True))
    assert compiled.backend == "PyTorch, compiled"
    reference = predict(_image(), loaded, replace(PARAMS, keep_probabilities=True))
    np.testing.assert_allclose(compiled.probabilities, reference.probabilities, atol=1e-4)
    assert np.mean(compiled.labels == eager.labels) > 0.999
