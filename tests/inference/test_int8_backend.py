"""``backend="int8"``: U-Nets in 8-bit integers on ONNX Runtime, opt-in, checked, cached, and
float32 (said so) whenever the quantized copy cannot be made or disagrees."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference import onnx_backend, onnx_int8
from napari_cellseg.inference.api import predict
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.onnx_backend import cache_dir, choose_backend
from napari_cellseg.inference.onnx_int8 import calibration_tiles, int8_path
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import get_sample
from napari_cellseg.labels.metrics import evaluate_pair
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import BACKENDS, PredictParams
from tiny_models import TINY_UNET

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CPU = torch.device("cpu")


def _loaded(seed: int = 0, **card_fields) -> LoadedModel:
    torch.manual_seed(seed)
    model = build_model("unet", **TINY_UNET).eval()
    card = replace(ModelCard.for_model("unet", TINY_UNET), **card_fields)
    return LoadedModel(model, card, Path("m"), "test")


@pytest.fixture
def random_weights_pass(monkeypatch):
    """A random tiny U-Net's logits sit near the class boundary, where 8-bit rounding flips
    some pixels (97.9 % agreement measured): the check's floor is lowered for these tests;
    the demo U-Net passes the real one (the last test)."""
    monkeypatch.setattr(onnx_int8, "AGREEMENT_FLOOR", 0.5)


def test_int8_is_an_opt_in_choice_for_unets_on_the_cpu(monkeypatch) -> None:
    assert "int8" in BACKENDS and PredictParams(backend="int8").backend == "int8"
    assert choose_backend("int8", "unet", CPU) == ("int8", None)
    assert choose_backend("auto", "unet", CPU)[0] == "onnx"  # never chosen by itself
    chosen, note = choose_backend("int8", "maskrcnn", CPU)
    assert chosen == "torch" and "int8 backend runs U-Nets on the CPU only" in note
    chosen, note = choose_backend("int8", "unet", torch.device("cuda"))
    assert chosen == "torch" and "cuda devices run on PyTorch" in note
    monkeypatch.setattr(onnx_backend, "onnx_installed", lambda: False)
    with pytest.raises(CellsegError, match=r"not installed: pip install 'napari-cellseg\[onnx\]'"):
        choose_backend("int8", "unet", CPU)


def test_calibration_tiles_follow_the_card() -> None:
    rgb = calibration_tiles(_loaded().card)
    # every whole 256² tile of the samples: fluorescence 1, brightfield 4, H&E 1
    assert len(rgb) == 6 and all(t.shape == (1, 3, 256, 256) for t in rgb)
    assert all(t.dtype == np.float32 and t.flags.c_contiguous for t in rgb)
    two = calibration_tiles(_loaded(input_channels=2, channel_handling="channels").card)
    assert len(two) == 6 and all(t.shape == (1, 2, 256, 256) for t in two)
    np.testing.assert_array_equal(two[0][:, 0], two[0][:, 1])  # grey in every channel


def test_the_quantized_copy_is_cached_beside_the_export_and_reused(
    monkeypatch, random_weights_pass
) -> None:
    loaded = _loaded(seed=103)
    runner = ModelRunner(loaded, CPU, backend="int8")
    assert runner.notice is None and runner.onnx.precision == "int8"
    assert runner.backend_name == "ONNX Runtime int8"
    path = Path(runner.onnx.path)
    assert path.parent == cache_dir() and path.name.endswith("-int8v2.onnx")
    assert path == int8_path(onnx_backend.export_path(loaded.model, 3)) and path.is_file()
    assert loaded.model not in onnx_backend.SESSIONS  # the float32 session is not kept
    made = path.stat().st_mtime_ns

    def never(*_args):
        raise AssertionError("quantized again")

    monkeypatch.setattr(onnx_int8, "quantize_unet", never)
    again = ModelRunner(loaded, CPU, backend="int8")
    assert again.onnx is runner.onnx  # this process's session
    onnx_int8.SESSIONS.clear()
    fresh = ModelRunner(loaded, CPU, backend="int8")  # another process: the file on disk
    assert fresh.onnx is not runner.onnx and fresh.onnx.precision == "int8"
    assert path.stat().st_mtime_ns == made
    assert not list(path.parent.glob(".*partial")) and not list(path.parent.glob(".*.pre"))


def test_a_passed_check_is_kept_for_this_machine_and_not_run_again(
    monkeypatch, random_weights_pass
) -> None:
    loaded = _loaded(seed=107)
    runner = ModelRunner(loaded, CPU, backend="int8")
    path = Path(runner.onnx.path)
    kept = onnx_int8.checked_agreement(path)
    assert kept is not None and kept >= onnx_int8.AGREEMENT_FLOOR
    assert path.with_suffix(".checked.json").is_file()
    checks = []
    real = onnx_int8._agreement
    monkeypatch.setattr(onnx_int8, "_agreement", lambda *a: checks.append(1) or real(*a))
    onnx_int8.SESSIONS.clear()  # another session on this machine: the kept check stands
    assert ModelRunner(loaded, CPU, backend="int8").onnx.precision == "int8" and not checks
    key = onnx_int8.check_key(path)
    monkeypatch.setattr(onnx_int8, "check_key", lambda target: key + " another cpu")
    onnx_int8.SESSIONS.clear()  # another CPU (or ONNX Runtime version): checked again
    assert ModelRunner(loaded, CPU, backend="int8").onnx.precision == "int8" and checks == [1]
    assert len(json_of(path.with_suffix(".checked.json"))) == 2  # both machines' checks


def test_a_pruned_copy_takes_its_kept_checks_with_it(tmp_path) -> None:
    from napari_cellseg.inference.onnx_backend import used_and_pruned

    old, new = tmp_path / "a-c3-int8v2.onnx", tmp_path / "b-c3.onnx"
    for path in (old, new):
        path.write_bytes(b"x" * 100)
    (tmp_path / "a-c3-int8v2.checked.json").write_text("{}")
    (tmp_path / "b-c3.checked.json").write_text("{}")
    assert used_and_pruned(new, limit_bytes=150) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-c3.checked.json", "b-c3.onnx"]


def json_of(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_a_failed_quantization_runs_float32_with_a_notice(monkeypatch) -> None:
    def broken(*_args):
        raise RuntimeError("no kernel for QLinearFoo\ntrace")

    monkeypatch.setattr(onnx_int8, "quantize_unet", broken)
    runner = ModelRunner(_loaded(seed=104), CPU, backend="int8")
    assert runner.onnx is not None and runner.onnx.precision == "float32"
    assert runner.backend_name == "ONNX Runtime"
    assert runner.notice == (
        "could not quantize this model to int8 (no kernel for QLinearFoo); running float32"
    )


def test_a_disagreeing_copy_is_refused_and_not_made_again(monkeypatch) -> None:
    checks = []
    monkeypatch.setattr(onnx_int8, "_agreement", lambda *_args: checks.append(1) or 0.9)
    loaded = _loaded(seed=105)
    runner = ModelRunner(loaded, CPU, backend="int8")
    assert runner.onnx.precision == "float32" and checks == [1]
    assert "int8 gave 90.0 % of float32's pixel classes" in runner.notice
    assert "running float32" in runner.notice
    path = int8_path(onnx_backend.export_path(loaded.model, 3))
    assert onnx_int8.checked_agreement(path) == 0.9  # kept with its verdict

    def never(*_args):
        raise AssertionError("quantized again")

    monkeypatch.setattr(onnx_int8, "quantize_unet", never)
    again = ModelRunner(loaded, CPU, backend="int8")  # the next start: float32 at once
    assert again.onnx.precision == "float32" and again.notice == runner.notice
    assert checks == [1]


def test_int8_tiles_go_together_as_float32_ones_do(random_weights_pass) -> None:
    runner = ModelRunner(_loaded(seed=106), CPU, backend="int8")
    tiles = np.random.default_rng(0).random((4, 3, 64, 64), np.float32)
    together = runner.unet_probabilities(tiles)
    alone = np.concatenate([runner.unet_probabilities(tiles[i : i + 1]) for i in range(4)])
    assert runner.tiles_per_pass(4, tiles.shape) == 4
    np.testing.assert_allclose(together, alone, atol=1e-6)


@pytest.mark.parametrize("key", ["dsb_fluorescence", "dsb_he"])
def test_demo_unet_in_int8_finds_the_same_nuclei(demo_unet, key: str) -> None:
    """Real images: int8 labels match float32's object by object, and score as well."""
    sample = get_sample(key)
    image = read_image(sample.image_path).data
    truth = read_image(sample.mask_path).data
    params = PredictParams(device="cpu", diameter="off")
    fast = predict(image, demo_unet, replace(params, backend="int8"))
    exact = predict(image, demo_unet, replace(params, backend="onnx"))
    assert (fast.backend, exact.backend) == ("ONNX Runtime int8", "ONNX Runtime")
    same = evaluate_pair(exact.labels, fast.labels)
    assert same["f1@0.5"] >= 0.95 and same["pixel_iou"] >= 0.95
    scores = [evaluate_pair(truth, p.labels)["dsb_ap"] for p in (fast, exact)]
    assert scores[0] >= scores[1] - 0.05
