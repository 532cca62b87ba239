"""Known exports: a weight file whose export is cached and checked here runs without its
PyTorch model, with the same labels; anything else builds the model as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.io import imread

from napari_cellseg.inference import onnx_int8, onnx_known
from napari_cellseg.inference.api import predict
from napari_cellseg.inference.model_runner import cached_load, clear_model_cache
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import load_weights, save_weights
from napari_cellseg.params import PredictParams
from tiny_models import TINY_UNET

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]
PARAMS = PredictParams(device="cpu", diameter="off", tile_size=64, overlap=16)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path / "cache"))
    clear_model_cache()
    yield
    clear_model_cache()


def _weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model("unet", **TINY_UNET).eval()
    return save_weights(model, ModelCard.for_model("unet", TINY_UNET), path)


def _image(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((96, 80), np.float32)


def _fresh(path: Path):
    """Load ``path`` as a new process would (nothing cached in this one)."""
    clear_model_cache()
    return cached_load(path, CPU)[0]


def test_a_known_export_runs_without_building_the_model(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w.safetensors")
    first = _fresh(weights)
    assert first.built  # nothing recorded yet: built, exported, checked
    before = predict(_image(), weights, PARAMS)
    record = onnx_known.record_path(first.file_key)
    assert json.loads(record.read_text())["export"].endswith(f"-c{first.card.input_channels}.onnx")

    written = record.stat().st_mtime_ns
    predict(_image(), weights, PARAMS)
    assert record.stat().st_mtime_ns == written  # recorded once, not at every run
    second = _fresh(weights)
    assert not second.built and second.file_key == first.file_key
    after = predict(_image(), weights, PARAMS)
    assert not second.built  # the export ran; the PyTorch model was never made
    assert after.backend == before.backend == "ONNX Runtime"
    np.testing.assert_array_equal(after.labels, before.labels)


def test_the_pytorch_backend_builds_a_deferred_model_when_it_needs_it(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w.safetensors")
    predict(_image(), weights, PARAMS)
    loaded = _fresh(weights)
    assert not loaded.built
    on_torch = replace(PARAMS, backend="torch")
    deferred = predict(_image(), weights, on_torch)
    assert loaded.built and deferred.backend == "PyTorch"
    reference = predict(_image(), load_weights(weights), on_torch)
    np.testing.assert_array_equal(deferred.labels, reference.labels)


def test_a_changed_file_another_cpu_or_a_pruned_export_builds_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = _weights(tmp_path / "w.safetensors")
    predict(_image(), weights, PARAMS)
    assert not _fresh(weights).built

    monkeypatch.setattr(onnx_int8, "cpu_id", lambda: "another-cpu")
    assert _fresh(weights).built  # its check was made on another CPU
    monkeypatch.undo()

    _weights(weights, seed=5)  # the same path, other weights
    changed = _fresh(weights)
    assert changed.built
    predict(_image(), weights, PARAMS)  # recorded in its turn
    assert not _fresh(weights).built

    export = onnx_known._export(onnx_known._read(changed.file_key))
    export.unlink()  # pruned from the cache
    assert _fresh(weights).built
    assert not onnx_known.record_path(changed.file_key).exists()  # nor kept, then


def test_a_model_modified_in_place_is_not_recorded(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w.safetensors")
    loaded = _fresh(weights)
    with torch.no_grad():
        next(loaded.model.parameters()).add_(1.0)  # e.g. trained in this process
    assert not loaded.pristine
    predict(_image(), loaded, PARAMS)
    assert not onnx_known.record_path(loaded.file_key).exists()


def test_an_unreadable_record_or_export_builds_the_model(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w.safetensors")
    first = predict(_image(), weights, PARAMS)
    key = _fresh(weights).file_key
    record = onnx_known.record_path(key)
    text = record.read_text()
    record.write_text("{not json")
    assert _fresh(weights).built
    record.write_text(text)
    export = onnx_known._export(json.loads(text))
    for graph in export.parent.glob(f"{export.stem}.opt-*.onnx"):
        graph.write_bytes(b"broken")  # the saved optimized graph: made again from the export
    loaded = _fresh(weights)
    assert not loaded.built
    again = predict(_image(), weights, PARAMS)
    np.testing.assert_array_equal(again.labels, first.labels)
    export.write_bytes(b"broken")
    for graph in export.parent.glob(f"{export.stem}.opt-*.onnx"):
        graph.unlink()
    loaded = _fresh(weights)
    assert onnx_known.known_session(loaded, "float32") is None  # cannot be opened


def test_with_card_shares_one_deferred_build(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w.safetensors")
    predict(_image(), weights, PARAMS)
    loaded = _fresh(weights)
    copy = loaded.with_card(replace(loaded.card, name="other"), notes=[])
    assert copy.identity is loaded.identity and copy.card.name == "other"
    assert not copy.built
    assert copy.model is loaded.model and loaded.built


def test_a_deferred_model_pickles_and_copies_as_a_built_one(tmp_path: Path) -> None:
    import copy
    import pickle

    weights = _weights(tmp_path / "w.safetensors")
    predict(_image(), weights, PARAMS)
    loaded = _fresh(weights)
    assert not loaded.built
    for twin in (pickle.loads(pickle.dumps(loaded)), copy.deepcopy(loaded)):
        assert twin.built and twin.card == loaded.card and twin.pristine
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(twin.model(x), loaded.model(x))


def test_int8_runs_from_its_checked_copy_without_the_model() -> None:
    demo = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
    image = imread(ROOT / "sample_data" / "images" / "dsb_fluorescence.png")
    params = PredictParams(device="cpu", diameter="off", backend="int8")
    first = predict(image, demo, params)
    assert first.backend == "ONNX Runtime int8"
    loaded = _fresh(demo)
    assert not loaded.built
    second = predict(image, demo, params)
    assert not loaded.built and second.backend == "ONNX Runtime int8"
    np.testing.assert_array_equal(second.labels, first.labels)


def test_a_new_process_with_a_known_export_never_imports_smp(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w.safetensors")
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from napari_cellseg.inference.api import predict
        from napari_cellseg.params import PredictParams
        image = np.random.default_rng(1).random((96, 80), np.float32)
        params = PredictParams(device="cpu", diameter="off", tile_size=64, overlap=16)
        result = predict(image, {str(weights)!r}, params)
        print(result.backend, int(result.labels.max()),
              "segmentation_models_pytorch" in sys.modules, "torchvision" in sys.modules)
        """
    )
    env = dict(os.environ)

    def run() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        return done.stdout.split()

    first = run()
    assert first[0:2] == ["ONNX", "Runtime"] and first[3:] == ["True", "True"]
    second = run()
    assert second[:3] == first[:3]  # same backend, same number of objects
    assert second[3:] == ["False", "False"]  # neither smp nor torchvision imported
