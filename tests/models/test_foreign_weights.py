"""Weight files users already have: bare state dicts, checkpoints, smp folders."""

from __future__ import annotations

import pytest
import torch

from napari_cellseg.models import build_unet, load_weights, read_card
from napari_cellseg.models.weights import FOREIGN_SOURCE


@pytest.mark.parametrize(
    ("encoder", "in_channels", "classes"),
    [("resnet18", 3, 1), ("resnet34", 1, 3), ("efficientnet-b0", 3, 2)],
)
def test_smp_unet_state_dict_is_detected(tmp_path, encoder, in_channels, classes) -> None:
    model = build_unet(encoder_name=encoder, in_channels=in_channels, classes=classes).eval()
    path = tmp_path / "my_unet.pth"
    torch.save(model.state_dict(), path)
    loaded = load_weights(path)
    card = loaded.card
    assert card.family == "unet"
    assert card.builder_args["encoder_name"] == encoder
    assert card.builder_args["in_channels"] == in_channels
    assert card.builder_args["classes"] == classes
    assert card.provenance["source"] == FOREIGN_SOURCE
    assert card.normalisation["method"] == "percentile"
    assert "no model card" in loaded.notes[0]
    x = torch.rand(1, in_channels, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_smp_unet_with_custom_decoder_is_detected(tmp_path) -> None:
    model = build_unet(
        encoder_name="resnet18",
        encoder_depth=4,
        decoder_channels=(128, 64, 32, 16),
        decoder_attention_type="scse",
        classes=3,
    )
    path = tmp_path / "custom.pt"
    torch.save(model.state_dict(), path)
    args = read_card(path).builder_args
    assert args["encoder_depth"] == 4
    assert args["decoder_channels"] == [128, 64, 32, 16]
    assert args["decoder_attention_type"] == "scse"


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"epoch": 7, "model_state_dict": sd, "optimizer_state_dict": {"state": {}}},
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["checkpoint", "lightning", "dataparallel"],
)
def test_wrapped_state_dicts_load(tmp_path, wrap) -> None:
    model = build_unet(encoder_name="resnet18", classes=3)
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(model.state_dict()), path)
    assert load_weights(path).card.builder_args["encoder_name"] == "resnet18"


def test_smp_save_pretrained_folder_loads(tmp_path) -> None:
    model = build_unet(encoder_name="resnet34", in_channels=1, classes=2).eval()
    model.save_pretrained(str(tmp_path / "smp_model"))
    loaded = load_weights(tmp_path / "smp_model")
    assert loaded.source == "smp-folder"
    assert loaded.card.builder_args["encoder_name"] == "resnet34"
    assert "save_pretrained" in loaded.card.provenance["source"]
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_foreign_safetensors_without_card(tmp_path) -> None:
    from safetensors.torch import save_file

    model = build_unet(encoder_name="resnet18", classes=3)
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert load_weights(path).card.provenance["source"] == FOREIGN_SOURCE


@pytest.mark.parametrize(("num_classes", "hidden"), [(2, 256), (4, 128)])
def test_torchvision_tutorial_maskrcnn_is_detected(
    tmp_path, tutorial_maskrcnn, num_classes, hidden
) -> None:
    model = tutorial_maskrcnn(num_classes, hidden).eval()
    path = tmp_path / "maskrcnn_finetuned.pth"
    torch.save(model.state_dict(), path)
    loaded = load_weights(path)
    args = loaded.card.builder_args
    assert loaded.card.family == "maskrcnn"
    assert (args["backbone"], args["variant"]) == ("resnet50", "v1")
    assert args["num_classes"] == num_classes
    assert args["mask_hidden_channels"] == hidden
    assert (args["min_size"], args["max_size"]) == (800, 1333)  # torchvision's defaults
    images = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        (expected,) = model(images)
        (actual,) = loaded.model(images)
    # We allow 500 detections (dense nuclei) where torchvision stops at 100: the first
    # 100 (sorted by score) must be the same objects.
    n = len(expected["boxes"])
    assert n > 0 and len(actual["boxes"]) >= n
    torch.testing.assert_close(expected["boxes"], actual["boxes"][:n])
    torch.testing.assert_close(expected["masks"], actual["masks"][:n])


def test_maskrcnn_v2_and_small_backbones_are_detected(tmp_path) -> None:
    from napari_cellseg.models import build_maskrcnn

    for backbone, variant in (("resnet50", "v2"), ("resnet34", "v1")):
        path = tmp_path / f"{backbone}_{variant}.pth"
        torch.save(build_maskrcnn(backbone=backbone, variant=variant).state_dict(), path)
        args = read_card(path).builder_args
        assert (args["backbone"], args["variant"]) == (backbone, variant)
