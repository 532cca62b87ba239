"""build → save → load → identical outputs, for each family."""

from __future__ import annotations

import torch

from napari_cellseg.models import ModelCard, build_model, load_weights, read_card, save_weights


def _unet_outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_unet_round_trip_is_exact(tmp_path) -> None:
    args = {"encoder_name": "resnet18", "in_channels": 1, "classes": 3}
    model = build_model("unet", **args).eval()
    card = ModelCard.for_model("unet", args, provenance={"epochs": 2})
    path = save_weights(model, card, tmp_path / "unet.safetensors")
    loaded = load_weights(path)
    x = torch.rand(2, 1, 64, 64)
    assert torch.equal(_unet_outputs(model, x), _unet_outputs(loaded.model, x))
    assert loaded.card == card
    assert loaded.source == "safetensors"
    assert loaded.notes == []
    assert read_card(path) == card
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_unet_half_storage_halves_size_and_stays_close(tmp_path) -> None:
    args = {"encoder_name": "resnet18", "in_channels": 3, "classes": 2}
    model = build_model("unet", **args).eval()
    card = ModelCard.for_model("unet", args)
    full = save_weights(model, card, tmp_path / "full.safetensors")
    half = save_weights(model, card, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_weights(half)
    assert next(loaded.model.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(
        _unet_outputs(model, x), _unet_outputs(loaded.model, x), atol=2e-2, rtol=2e-2
    )


def test_maskrcnn_round_trip_is_exact(tmp_path) -> None:
    args = {"backbone": "resnet18", "num_classes": 3, "min_size": 128, "max_size": 128}
    model = build_model("maskrcnn", **args).eval()
    card = ModelCard.for_model("maskrcnn", args)
    path = save_weights(model, card, tmp_path / "maskrcnn.safetensors")
    loaded = load_weights(path)
    images = [torch.rand(3, 128, 128)]
    with torch.no_grad():
        (expected,) = model(images)
        (actual,) = loaded.model(images)
    assert len(expected["boxes"]) > 0  # a random model still proposes objects
    for key in ("boxes", "scores", "labels", "masks"):
        assert torch.equal(expected[key], actual[key]), key
    assert loaded.card.builder_args == card.builder_args
    assert loaded.card.outputs == ["background", "class_1", "class_2"]


def test_cli_info_prints_the_card(tmp_path, capsys) -> None:
    from napari_cellseg.cli import main

    args = {"encoder_name": "resnet18", "in_channels": 3, "classes": 3}
    card = ModelCard.for_model(
        "unet", args, name="demo-unet", provenance={"metrics": {"dsb_ap": 0.61}}
    )
    path = save_weights(build_model("unet", **args), card, tmp_path / "demo.safetensors")
    assert main(["info", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "demo-unet" in out
    assert "U-Net (resnet18)" in out
    assert "dsb_ap 0.610" in out
    assert "weights loaded and checked" in out
    assert main(["info", "--json", str(path)]) == 0
    assert '"family": "unet"' in capsys.readouterr().out
