"""Every bad weight file gets one clear line naming the file and the problem."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from napari_cellseg.errors import WeightFileError
from napari_cellseg.models import ModelCard, build_model, load_weights, read_card, save_weights


class _CreatesAFile:
    """Unpickling this would create a file: the marker of code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def unet_file(tmp_path):
    args = {"encoder_name": "resnet18", "in_channels": 3, "classes": 3}
    card = ModelCard.for_model("unet", args)
    return save_weights(build_model("unet", **args), card, tmp_path / "good.safetensors")


def _assert_one_clear_line(error: pytest.ExceptionInfo, path, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("loader", [load_weights, read_card])
def test_text_file_is_not_a_weight_file(tmp_path, loader) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are my notes, not weights\n")
    with pytest.raises(WeightFileError) as error:
        loader(path)
    _assert_one_clear_line(error, path, "not a weight file", "text file")


def test_image_named_like_weights(tmp_path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(WeightFileError) as error:
        load_weights(path)
    _assert_one_clear_line(error, path, "not a")


def test_empty_and_missing_files(tmp_path) -> None:
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(WeightFileError) as error:
        load_weights(empty)
    _assert_one_clear_line(error, empty, "empty file")
    with pytest.raises(WeightFileError) as error:
        load_weights(tmp_path / "nope.safetensors")
    _assert_one_clear_line(error, tmp_path / "nope.safetensors", "not found")


def test_folder_that_is_not_an_smp_model(tmp_path) -> None:
    with pytest.raises(WeightFileError) as error:
        load_weights(tmp_path)
    _assert_one_clear_line(error, tmp_path, "config.json")


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_safetensors(unet_file, fraction) -> None:
    data = unet_file.read_bytes()
    unet_file.write_bytes(data[: int(len(data) * fraction)])
    for loader in (load_weights, read_card):
        with pytest.raises(WeightFileError) as error:
            loader(unet_file)
        _assert_one_clear_line(error, unet_file, "truncated")


def test_truncated_safetensors_header(unet_file) -> None:
    unet_file.write_bytes(unet_file.read_bytes()[:200])
    with pytest.raises(WeightFileError) as error:
        read_card(unet_file)
    _assert_one_clear_line(error, unet_file, "truncated")


def test_truncated_torch_file(tmp_path) -> None:
    path = tmp_path / "cut.pth"
    torch.save(build_model("unet", encoder_name="resnet18").state_dict(), path)
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(WeightFileError) as error:
        load_weights(path)
    _assert_one_clear_line(error, path, "truncated or corrupt")


def test_unknown_architecture_says_which_keys_were_expected(tmp_path) -> None:
    path = tmp_path / "resnet.pth"
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightFileError) as error:
        load_weights(path)
    _assert_one_clear_line(
        error, path, "unknown architecture", "segmentation_head.0.weight", "roi_heads", "found keys"
    )


def test_card_that_does_not_match_the_tensors_is_a_shape_mismatch(tmp_path) -> None:
    model = build_model("unet", encoder_name="resnet18", classes=2)
    wrong_card = ModelCard.for_model("unet", {"encoder_name": "resnet18", "classes": 3})
    path = save_weights(model, wrong_card, tmp_path / "mismatch.safetensors")
    with pytest.raises(WeightFileError) as error:
        load_weights(path)
    _assert_one_clear_line(
        error,
        path,
        "shape mismatch",
        "segmentation_head.0.weight",
        "(2, 16, 3, 3)",
        "(3, 16, 3, 3)",
    )


def test_card_naming_another_encoder_is_reported(tmp_path) -> None:
    model = build_model("unet", encoder_name="resnet18", classes=3)
    wrong_card = ModelCard.for_model("unet", {"encoder_name": "resnet34", "classes": 3})
    path = save_weights(model, wrong_card, tmp_path / "wrong_encoder.safetensors")
    with pytest.raises(WeightFileError) as error:
        load_weights(path)
    _assert_one_clear_line(error, path, "missing", "encoder.layer")


def test_invalid_card_json(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "badcard.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"cellseg.card": "{broken"})
    with pytest.raises(WeightFileError) as error:
        read_card(path)
    _assert_one_clear_line(error, path, "invalid model card")


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, how) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"w": torch.zeros(1)}, "hook": _CreatesAFile(str(marker))}
    if how == "torch.save":
        torch.save(payload, path)
    else:  # a plain pickle (no tensors, so the first global met is the payload's)
        with path.open("wb") as fh:
            pickle.dump({"w": [0.0], "hook": _CreatesAFile(str(marker))}, fh, protocol=2)
    assert not marker.exists()
    for loader in (load_weights, read_card):
        with pytest.raises(WeightFileError) as error:
            loader(path)
        _assert_one_clear_line(error, path, "refused", "carries code", "open")
    assert not marker.exists(), "unpickling ran the payload"
    assert not os.path.exists("PWNED")
