"""Mask R-CNN builder: torchvision Mask R-CNN with a ResNet-FPN backbone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from napari_cellseg.core.errors import ModelBuildError
from napari_cellseg.models._local_weights import load_local_weights, offline_message
from napari_cellseg.models.registry import register_model

BACKBONES = ("resnet18", "resnet34", "resnet50")
VARIANTS = ("v1", "v2")
# Small anchors: nuclei are 5-60 px; torchvision's COCO default is (32, ..., 512).
DEFAULT_ANCHOR_SIZES = ((16,), (32,), (64,), (128,), (256,))
TORCHVISION_ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)


@register_model("maskrcnn")
def build_maskrcnn(
    *,
    backbone: str = "resnet50",
    variant: str = "v1",
    num_classes: int = 2,
    anchor_sizes: Sequence[Sequence[int]] = DEFAULT_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    detections_per_img: int = 500,
    min_size: int = 512,
    max_size: int = 1024,
    mask_hidden_channels: int = 256,
    backbone_weights: str | Path | None = None,
) -> torch.nn.Module:
    """Build a torchvision Mask R-CNN.

    Parameters
    ----------
    backbone : str
        ``resnet18``, ``resnet34`` or ``resnet50`` (with an FPN).
    variant : str
        ``v1`` (torchvision's original R50-FPN) or ``v2`` (the improved R50-FPN v2 with
        normalised FPN and conv box head; ResNet-50 only).
    num_classes : int
        Number of classes including background (2 = background + one object class).
    anchor_sizes : sequence of sequences of int
        One tuple of anchor sizes (pixels, after resizing) per FPN level (5 levels).
    aspect_ratios : sequence of float
        Anchor aspect ratios, the same on every level.
    detections_per_img : int
        Maximum objects returned per image (DSB images hold up to 375 nuclei).
    min_size, max_size : int
        The model's internal resizing: the shorter side is scaled to ``min_size`` unless
        the longer would exceed ``max_size``.
    mask_hidden_channels : int
        Channels of the mask predictor's transposed convolution.
    backbone_weights : str, Path or None
        A *local* ResNet weight file for the backbone body; ``None`` initialises randomly.

    Returns
    -------
    torch.nn.Module
        A ``torchvision.models.detection.MaskRCNN``.
    """
    from torchvision.models.detection import (
        MaskRCNN,
        maskrcnn_resnet50_fpn,
        maskrcnn_resnet50_fpn_v2,
    )
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    if backbone not in BACKBONES:
        raise ModelBuildError(
            f"unknown Mask R-CNN backbone {backbone!r}; choose one of {', '.join(BACKBONES)}"
        )
    if variant not in VARIANTS:
        raise ModelBuildError(f"unknown Mask R-CNN variant {variant!r}; choose v1 or v2")
    if variant == "v2" and backbone != "resnet50":
        raise ModelBuildError("the v2 Mask R-CNN exists only with backbone='resnet50'")
    if num_classes < 2:
        raise ModelBuildError(
            f"num_classes counts the background, so it must be >= 2, got {num_classes}"
        )
    anchor_sizes = tuple(tuple(int(s) for s in level) for level in anchor_sizes)
    aspect_ratios = tuple(float(r) for r in aspect_ratios)
    if len(anchor_sizes) != 5:
        raise ModelBuildError(
            f"anchor_sizes needs one entry per FPN level (5), got {len(anchor_sizes)}"
        )
    if len({len(level) for level in anchor_sizes}) != 1:
        raise ModelBuildError("every FPN level needs the same number of anchor sizes")
    local_file = None
    if backbone_weights is not None:
        if isinstance(backbone_weights, Path) or Path(str(backbone_weights)).suffix:
            local_file = Path(backbone_weights)
        else:
            raise ModelBuildError(offline_message("backbone_weights", backbone_weights))

    anchors = AnchorGenerator(
        sizes=anchor_sizes, aspect_ratios=(aspect_ratios,) * len(anchor_sizes)
    )
    n_anchors = anchors.num_anchors_per_location()[0]
    common = {
        "box_detections_per_img": int(detections_per_img),
        "min_size": int(min_size),
        "max_size": int(max_size),
    }
    if backbone == "resnet50" and n_anchors == 3:
        # torchvision's own R50 builders (3 anchors per location); anchors set below.
        factory = maskrcnn_resnet50_fpn if variant == "v1" else maskrcnn_resnet50_fpn_v2
        model = factory(weights=None, weights_backbone=None, num_classes=num_classes, **common)
        model.rpn.anchor_generator = anchors
    elif variant == "v2":
        raise ModelBuildError("the v2 Mask R-CNN needs exactly 3 anchors per location")
    else:
        from torchvision.models.detection.rpn import RPNHead

        body = resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=5)
        rpn_head = RPNHead(body.out_channels, n_anchors)
        model = MaskRCNN(
            body,
            num_classes=num_classes,
            rpn_anchor_generator=anchors,
            rpn_head=rpn_head,
            **common,
        )
    if mask_hidden_channels != 256:
        model.roi_heads.mask_predictor = MaskRCNNPredictor(256, mask_hidden_channels, num_classes)
    if local_file is not None:
        load_local_weights(model.backbone.body, local_file, what="backbone_weights")
    return model
