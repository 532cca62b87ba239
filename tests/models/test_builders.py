from __future__ import annotations

import pytest
import torch

from napari_cellseg.errors import ModelBuildError
from napari_cellseg.models import available_families, build_maskrcnn, build_model, build_unet


def test_registry_lists_both_families() -> None:
    assert available_families() == ["maskrcnn", "unet"]


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(ModelBuildError, match="unknown model family 'stardist'.*maskrcnn, unet"):
        build_model("stardist")


def test_unknown_builder_argument_suggests_the_right_one() -> None:
    with pytest.raises(ModelBuildError, match="'encoder' \\(did you mean 'encoder_name'"):
        build_model("unet", encoder="resnet18")


def test_builders_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        build_unet("resnet18")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("encoder", "in_channels", "classes"),
    [("resnet18", 1, 3), ("resnet34", 3, 2), ("efficientnet-b0", 2, 1)],
)
def test_unet_any_encoder_channels_and_heads(encoder: str, in_channels: int, classes: int) -> None:
    model = build_unet(encoder_name=encoder, in_channels=in_channels, classes=classes).eval()
    with torch.no_grad():
        out = model(torch.rand(1, in_channels, 64, 64))
    assert out.shape == (1, classes, 64, 64)


def test_unet_unknown_encoder_suggests_close_names() -> None:
    with pytest.raises(ModelBuildError, match="unknown U-Net encoder 'resnet35'.*resnet3"):
        build_unet(encoder_name="resnet35")


@pytest.mark.parametrize("weights", ["imagenet", "DEFAULT"])
def test_named_pretrained_weights_are_refused_offline(weights: str) -> None:
    with pytest.raises(ModelBuildError, match="never downloads"):
        build_unet(encoder_name="resnet18", encoder_weights=weights)
    with pytest.raises(ModelBuildError, match="never downloads"):
        build_maskrcnn(backbone="resnet18", backbone_weights=weights)


def test_missing_local_encoder_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelBuildError, match="does not exist"):
        build_unet(encoder_name="resnet18", encoder_weights=tmp_path / "missing.pth")


def test_local_encoder_weights_are_loaded(tmp_path) -> None:
    from torchvision.models import resnet18

    source = resnet18(weights=None)
    torch.nn.init.constant_(source.conv1.weight, 0.25)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # includes an 'fc' the encoder lacks
    model = build_unet(encoder_name="resnet18", encoder_weights=path)
    assert torch.all(model.encoder.conv1.weight == 0.25)
    maskrcnn = build_maskrcnn(backbone="resnet18", backbone_weights=path)
    assert torch.all(maskrcnn.backbone.body.conv1.weight == 0.25)


@pytest.mark.parametrize(
    ("backbone", "variant"),
    [("resnet18", "v1"), ("resnet34", "v1"), ("resnet50", "v1"), ("resnet50", "v2")],
)
def test_maskrcnn_backbones_run(backbone: str, variant: str) -> None:
    model = build_maskrcnn(
        backbone=backbone, variant=variant, num_classes=3, min_size=96, max_size=96
    ).eval()
    with torch.no_grad():
        (out,) = model([torch.rand(3, 96, 96)])
    assert set(out) >= {"boxes", "scores", "labels", "masks"}
    assert model.roi_heads.box_predictor.cls_score.out_features == 3


def test_maskrcnn_defaults_suit_dense_nuclei() -> None:
    model = build_maskrcnn(backbone="resnet18")
    assert model.roi_heads.detections_per_img >= 375
    assert model.rpn.anchor_generator.sizes[0] == (16,)
    assert model.transform.min_size == (512,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "vgg16"}, "unknown Mask R-CNN backbone"),
        ({"variant": "v3"}, "unknown Mask R-CNN variant"),
        ({"backbone": "resnet18", "variant": "v2"}, "only with backbone='resnet50'"),
        ({"num_classes": 1}, "counts the background"),
        ({"anchor_sizes": ((16,), (32,))}, "one entry per FPN level"),
        ({"mask_roi_size": 4}, "mask_roi_size must be between 7 and 56"),
    ],
)
def test_maskrcnn_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelBuildError, match=message):
        build_maskrcnn(**kwargs)


def test_mask_roi_size_sets_the_mask_grid_in_inference_and_training() -> None:
    """The mask head reads a 21×21 grid and draws 42×42 masks; training's mask loss follows."""
    model = build_maskrcnn(
        backbone="resnet18",
        fpn_channels=32,
        returned_layers=(1, 2, 3),
        anchor_sizes=((8,), (16,), (32,), (64,)),
        box_head_size=64,
        mask_hidden_channels=32,
        mask_roi_size=21,
        min_size=96,
        max_size=96,
    )
    assert model.roi_heads.mask_roi_pool.output_size == (21, 21)
    sides = []
    model.roi_heads.mask_predictor.register_forward_hook(lambda m, i, o: sides.append(o.shape))
    masks = torch.zeros(1, 96, 96, dtype=torch.uint8)
    masks[0, 20:50, 30:60] = 1
    target = {"boxes": torch.tensor([[30.0, 20.0, 60.0, 50.0]]), "labels": torch.tensor([1])}
    losses = model.train()([torch.rand(3, 96, 96)], [{**target, "masks": masks}])
    assert torch.isfinite(losses["loss_mask"]) and sides[-1][-2:] == (42, 42)
