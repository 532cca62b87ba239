"""ONNX Runtime backend: same probabilities and labels as PyTorch, cached export, fallbacks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, drain
from napari_cellseg.inference import onnx_backend
from napari_cellseg.inference.api import iter_predict, predict
from napari_cellseg.inference.model_runner import TTA_TRANSFORMS, ModelRunner
from napari_cellseg.inference.onnx_backend import choose_backend, onnx_unet
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams
from tiny_models import TINY_MASKRCNN, TINY_UNET

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CPU = torch.device("cpu")
SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def _loaded(seed: int = 0, args: dict | None = None) -> LoadedModel:
    torch.manual_seed(seed)
    args = args or TINY_UNET
    model = build_model("unet", **args).eval()
    return LoadedModel(model, ModelCard.for_model("unet", args), Path("m"), "test")


def test_choose_backend() -> None:
    assert choose_backend("auto", "unet", CPU) == ("onnx", None)
    assert choose_backend("torch", "unet", CPU) == ("torch", None)
    chosen, note = choose_backend("onnx", "maskrcnn", CPU)
    assert chosen == "torch" and "U-Nets on the CPU only" in note
    assert choose_backend("auto", "maskrcnn", CPU) == ("torch", None)  # nothing to say
    chosen, note = choose_backend("onnx", "unet", torch.device("cuda"))
    assert chosen == "torch" and "cuda" in note


def test_missing_onnxruntime_falls_back_or_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(onnx_backend, "onnx_installed", lambda: False)
    assert choose_backend("auto", "unet", CPU) == ("torch", None)
    with pytest.raises(CellsegError, match=r"not installed: pip install 'napari-cellseg\[onnx\]'"):
        choose_backend("onnx", "unet", CPU)


@pytest.mark.parametrize("index", [0, 1, 4, 7])
def test_probabilities_match_pytorch_for_every_tta_copy(index: int) -> None:
    loaded = _loaded()
    fast = ModelRunner(loaded, CPU, backend="onnx")
    slow = ModelRunner(loaded, CPU, backend="torch")
    assert fast.onnx is not None and slow.onnx is None
    assert fast.backend_name == "ONNX Runtime"
    batch = np.random.default_rng(index).random((2, 3, 64, 96), dtype=np.float32)
    assert TTA_TRANSFORMS[index] is not None
    ours, theirs = fast.unet_copy(batch, index), slow.unet_copy(batch, index)
    assert ours.shape == theirs.shape == (2, 3, 64, 96)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_export_is_cached_on_disk_and_in_memory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    loaded = _loaded(seed=3)
    first, note = onnx_unet(loaded.model, 3)
    assert note is None and first is not None
    files = list((tmp_path / "onnx").glob("*-c3.onnx"))  # the export (not its CPU's graph)
    assert len(files) == 1 and files[0].stat().st_size > 0
    assert onnx_unet(loaded.model, 3)[0] is first  # same model, same weights: same session
    # another process (a fresh model object with the same weights) reuses the file
    twin = _loaded(seed=3)
    stamp = files[0].stat().st_mtime_ns
    assert onnx_unet(twin.model, 3)[0] is not None
    assert files[0].stat().st_mtime_ns == stamp
    assert not list((tmp_path / "onnx").glob(".*partial"))


def test_changed_weights_are_exported_again(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    loaded = _loaded(seed=4)
    first, _ = onnx_unet(loaded.model, 3)
    with torch.no_grad():
        next(loaded.model.parameters()).add_(0.5)  # as an optimiser step would
    second, _ = onnx_unet(loaded.model, 3)
    assert second is not first
    assert len(list((tmp_path / "onnx").glob("*-c3.onnx"))) == 2
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        expected = loaded.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(second(x), expected, rtol=1e-4, atol=1e-4)


def test_an_unchanged_model_is_hashed_once(monkeypatch) -> None:
    loaded = _loaded(seed=5)  # depth 3: layer3 and layer4 are unused stages (expanded zeros)
    hashed = []
    fingerprint = onnx_backend.weights_fingerprint
    monkeypatch.setattr(
        onnx_backend, "weights_fingerprint", lambda m: hashed.append(1) or fingerprint(m)
    )
    first = onnx_backend.export_path(loaded.model, 3)
    assert onnx_backend.export_path(loaded.model, 3) == first and len(hashed) == 1
    assert onnx_backend.export_path(loaded.model, 1).name.endswith("-c1.onnx")
    assert len(hashed) == 1
    with torch.no_grad():
        next(loaded.model.parameters()).add_(0.5)
    assert onnx_backend.export_path(loaded.model, 3) != first and len(hashed) == 2
    again = _loaded(seed=5)
    assert fingerprint(again.model) == first.name.split("-")[0]


def test_the_session_plans_no_memory_pattern(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    runner, _ = onnx_unet(_loaded(seed=6).model, 3)
    options = runner.session.get_session_options()
    assert options.enable_mem_pattern is False
    assert options.enable_cpu_mem_arena is True  # the arena stays: tiles reuse its buffers


def test_release_frees_the_arena_and_the_next_run_is_unchanged(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    runner, _ = onnx_unet(_loaded(seed=5).model, 3)
    x = np.random.default_rng(1).random((1, 3, 96, 64), dtype=np.float32)
    before = runner(x)
    runner.release()
    np.testing.assert_array_equal(runner(x), before)


@pytest.mark.parametrize(("shape", "releases"), [((3, 64, 64), 0), ((3, 64, 200), 1)])
def test_a_plane_of_several_tiles_releases_the_buffers_once(shape, releases, monkeypatch) -> None:
    loaded = _loaded(seed=6)
    calls = []
    original = onnx_backend.OnnxUNet.release

    def counted(self):
        calls.append(1)
        original(self)

    monkeypatch.setattr(onnx_backend.OnnxUNet, "release", counted)
    image = np.random.default_rng(2).random(shape[1:], dtype=np.float32)
    params = PredictParams(device="cpu", tile_size=64, overlap=16, diameter="off")
    labels = predict(image, loaded, params).labels
    assert len(calls) == releases
    expected = predict(image, loaded, replace(params, backend="torch")).labels
    np.testing.assert_array_equal(labels, expected)


def test_a_failed_export_falls_back_to_pytorch_with_a_notice(tmp_path, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("Unsupported: the operator foo\nlong trace")

    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))  # no export of these weights yet

    monkeypatch.setattr(onnx_backend, "_export", broken)
    loaded = _loaded(seed=5)
    runner = ModelRunner(loaded, CPU, backend="auto")
    assert runner.onnx is None
    assert runner.notice == (
        "ONNX Runtime could not run this model (Unsupported: the operator foo); using PyTorch"
    )
    image = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    events = []
    result = drain(iter_predict(image, loaded, PredictParams(device="cpu")), events.append)
    assert any(isinstance(e, Notice) and "using PyTorch" in e.message for e in events)
    assert result.labels.shape == (64, 64)


def test_a_disagreeing_export_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(onnx_backend, "_check", lambda *_args: 0.5)
    runner = ModelRunner(_loaded(seed=6), CPU, backend="onnx")
    assert runner.onnx is None and "differs from PyTorch's by 0.5" in runner.notice


def test_maskrcnn_stays_on_pytorch() -> None:
    torch.manual_seed(0)
    model = build_model("maskrcnn", **TINY_MASKRCNN).eval()
    card = ModelCard.for_model("maskrcnn", TINY_MASKRCNN)
    runner = ModelRunner(LoadedModel(model, card, Path("m"), "t"), CPU, backend="auto")
    assert runner.onnx is None and runner.notice is None


def test_demo_unet_labels_identical_on_the_samples() -> None:
    """The shipped U-Net on the three sample images, with TTA: labels equal to PyTorch's."""
    import imageio.v3 as iio

    weights = SAMPLE / "models" / "unet_dsb.safetensors"
    for name in ("dsb_fluorescence", "dsb_brightfield", "dsb_he"):
        image = iio.imread(SAMPLE / "images" / f"{name}.png")
        params = PredictParams(device="cpu", tta=2, keep_probabilities=True)
        fast = predict(image, weights, replace(params, backend="onnx"))
        slow = predict(image, weights, replace(params, backend="torch"))
        assert (fast.backend, slow.backend) == ("ONNX Runtime", "PyTorch")
        diff = np.abs(fast.probabilities.astype(np.float32) - slow.probabilities).max()
        assert diff <= 1e-3  # float16 maps: one step of their precision
        np.testing.assert_array_equal(fast.labels, slow.labels)


def test_the_cache_keeps_the_recently_used_models_within_its_limit(tmp_path, monkeypatch) -> None:
    """Least recently used exports go first once the cache is over its limit; the model
    in use stays even alone over it, and files other than exports are left alone."""
    import os

    from napari_cellseg.inference.onnx_backend import used_and_pruned

    files = {}
    for age, name in enumerate(["d-c3.onnx", "c-c3-int8v1.onnx", "b-c3.onnx", "a-c3.onnx"]):
        files[name] = tmp_path / name
        files[name].write_bytes(b"x" * 1000)
        os.utime(files[name], ns=(10**18 - age * 10**12, 10**18))  # last used: access time
    (tmp_path / ".e-c3.onnx.7.partial").write_bytes(b"x" * 5000)  # being written
    # a-c3 is the oldest; using it makes it the newest, so b-c3 and c-c3 (older) go
    assert used_and_pruned(files["a-c3.onnx"], limit_bytes=2500) == [
        files["b-c3.onnx"], files["c-c3-int8v1.onnx"]
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["a-c3.onnx", "d-c3.onnx"]
    assert (tmp_path / ".e-c3.onnx.7.partial").exists()
    assert used_and_pruned(files["d-c3.onnx"], limit_bytes=10) == [files["a-c3.onnx"]]
    assert files["d-c3.onnx"].exists()  # in use: kept, even alone over the limit
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE_LIMIT_MB", "0.001")  # 1048 bytes
    assert used_and_pruned(files["d-c3.onnx"]) == []
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE_LIMIT_MB", "lots")
    with pytest.raises(CellsegError, match=r"LIMIT_MB='lots' is not a number of megabytes"):
        used_and_pruned(files["d-c3.onnx"])


def test_running_a_model_prunes_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE_LIMIT_MB", "0")
    stale = cache_dir_of(tmp_path) / "0123-c3.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old export")
    runner = ModelRunner(_loaded(seed=11), CPU, backend="onnx")
    assert runner.onnx is not None and Path(runner.onnx.path).exists()
    assert not stale.exists()


def cache_dir_of(root: Path) -> Path:
    return root / "onnx"
