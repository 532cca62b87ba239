"""``cellseg tune`` end to end (the fake network of tests/core/test_tuning.py) and the
thresholds that ``cellseg predict`` takes from a model card."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile

from known_output_model import known_model, two_cells
from napari_cellseg import models
from napari_cellseg.cli.app import build_parser, main
from napari_cellseg.cli.predict import params_from_args
from napari_cellseg.models import ModelCard, read_card
from napari_cellseg.params import PostprocessParams


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    folder = tmp_path / "my cells"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image, truth = two_cells()
    for i in range(3):
        tifffile.imwrite(folder / "images" / f"cell{i}.tif", image)
        tifffile.imwrite(folder / "masks" / f"cell{i}.tif", truth)
    return folder


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weight file path whose loading gives the network with known output."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"stand-in")
    monkeypatch.setattr(models, "load_weights", lambda p, **kw: known_model())
    return path


def test_tune_writes_a_copy_with_the_best_thresholds(labelled, weights, capsys) -> None:
    grid = '{"boundary_threshold": [0.1, 0.5]}'
    args = ["tune", str(weights), "--data", str(labelled), "--device", "cpu", "--tile", "64"]
    assert main([*args, "--grid", grid]) == 0
    out = capsys.readouterr().out
    assert "current thresholds (library defaults): DSB AP 0.0000 on 3 images" in out
    assert "best of 2 settings: boundary_threshold 0.1: DSB AP" in out
    written = weights.with_name("model-tuned.safetensors")
    assert f"written {written}" in out
    assert weights.read_bytes() == b"stand-in"  # the input is never touched
    card = read_card(written)
    assert card.postprocess == {"boundary_threshold": 0.1}
    assert card.provenance["postprocess_tuning"]["data"] == "my cells"
    assert card.post_params().boundary_threshold == pytest.approx(0.1)


def test_tune_with_nothing_better_writes_nothing(labelled, weights, capsys) -> None:
    args = ["tune", str(weights), "--data", str(labelled), "--device", "cpu", "--tile", "64"]
    assert main([*args, "--grid", '{"boundary_threshold": [0.5]}', "--max-images", "2"]) == 0
    out = capsys.readouterr().out
    assert "on 2 images" in out
    assert "no better setting among 1 tried; nothing written" in out
    assert not weights.with_name("model-tuned.safetensors").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "{not json"], "--grid is not valid JSON"),
        (["--grid", '{"min_size": 10}'], "--grid must map names to lists of numbers"),
        (["--grid", '{"threshold": [1]}'], "cannot tune threshold"),
        (["--out", "{weights}"], "is the input file"),
        (["--out", "x.pt"], "must end in .safetensors"),
        (["--max-images", "0"], "--max-images must be at least 1"),
    ],
)
def test_tune_refuses_bad_options(labelled, weights, capsys, extra, message) -> None:
    extra = [e.replace("{weights}", str(weights)) for e in extra]
    assert main(["tune", str(weights), "--data", str(labelled), *extra]) == 2
    assert message in capsys.readouterr().err


def test_tune_needs_labelled_folders(tmp_path, weights, capsys) -> None:
    assert main(["tune", str(weights), "--data", str(tmp_path / "nowhere")]) == 2
    assert "folder not found" in capsys.readouterr().err


def predict_args(*extra: str):
    return build_parser().parse_args(["predict", "a.tif", "--weights", "w", "--out", "o", *extra])


def test_predict_takes_the_cards_thresholds_unless_given() -> None:
    card = ModelCard.for_model("unet", {"classes": 3})
    card.postprocess = {"prob_threshold": 0.75, "boundary_threshold": 0.01, "min_size": 50}
    post = params_from_args(predict_args(), card).post
    assert (post.prob_threshold, post.boundary_threshold, post.min_size) == (0.75, 0.01, 50)
    post = params_from_args(predict_args("--min-size", "5", "--threshold", "0.6"), card).post
    assert (post.prob_threshold, post.boundary_threshold, post.min_size) == (0.6, 0.01, 5)
    plain = ModelCard.for_model("unet", {"classes": 3})  # no values of its own: the defaults
    assert params_from_args(predict_args(), plain).post == PostprocessParams()
    assert params_from_args(predict_args("--no-fill-holes"), plain).post.fill_holes is False


def test_tune_default_output_never_replaces_an_earlier_copy(labelled, weights, capsys) -> None:
    earlier = weights.with_name("model-tuned.safetensors")
    earlier.write_bytes(b"an earlier tuned copy")
    grid = '{"boundary_threshold": [0.1, 0.5]}'
    args = ["tune", str(weights), "--data", str(labelled), "--device", "cpu", "--tile", "64"]
    assert main([*args, "--grid", grid]) == 0
    second = weights.with_name("model-tuned-2.safetensors")
    assert f"written {second}" in capsys.readouterr().out
    assert earlier.read_bytes() == b"an earlier tuned copy"
    assert read_card(second).postprocess == {"boundary_threshold": 0.1}


@pytest.fixture
def tta_seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The test-time augmentation of every network run made while tuning."""
    from napari_cellseg.training import tuning

    seen: list[int] = []
    real = tuning.iter_predict

    def spy(image, model, params, **kwargs):
        seen.append(params.tta)
        return real(image, model, params, **kwargs)

    monkeypatch.setattr(tuning, "iter_predict", spy)
    return seen


def test_tune_for_test_time_augmentation(labelled, weights, tta_seen) -> None:
    args = ["tune", str(weights), "--data", str(labelled), "--device", "cpu", "--tile", "64"]
    assert main([*args, "--grid", '{"boundary_threshold": [0.1, 0.5]}', "--tta", "2"]) == 0
    assert tta_seen and set(tta_seen) == {2}
    card = read_card(weights.with_name("model-tuned.safetensors"))
    assert card.provenance["postprocess_tuning"]["tta"] == 2
    assert "for test-time augmentation ×2" in card.summary()


def test_tune_a_mask_rcnn_for_test_time_augmentation(labelled, tmp_path, capsys, tta_seen):
    from tiny_models import save_tiny

    weights = save_tiny("maskrcnn", tmp_path / "m.safetensors")
    args = ["tune", str(weights), "--data", str(labelled), "--device", "cpu", "--tile", "64"]
    assert main([*args, "--grid", '{"min_size": [10, 30]}', "--tta", "2"]) == 0
    assert tta_seen and set(tta_seen) == {2}  # every image ran with both copies
    assert "ignored" not in capsys.readouterr().err
