"""The Mask R-CNN family's models part: torchvision builder, card conventions, foreign files.

The builder is torchvision's Mask R-CNN with a ResNet-FPN backbone; the card conventions
name its classes; :func:`infer_builder_args` reads the architecture of a state dict saved as
in torchvision's detection tutorial.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from pathlib import Path
from typing import Any

import torch

from napari_cellseg.errors import ModelBuildError, WeightFileError
from napari_cellseg.models._local_weights import load_local_weights, offline_message
from napari_cellseg.models.architecture import block_indices
from napari_cellseg.models.state_dict_io import StateDict

BACKBONES = ("resnet18", "resnet34", "resnet50")
VARIANTS = ("v1", "v2")
# Small anchors: nuclei are 5-60 px; torchvision's COCO default is (32, ..., 512).
DEFAULT_ANCHOR_SIZES = ((16,), (32,), (64,), (128,), (256,))
TORCHVISION_ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)
EXPECTED_KEYS = (
    "a torchvision Mask R-CNN (backbone.body.*, backbone.fpn.*, rpn.head.*, "
    "roi_heads.box_predictor.*, roi_heads.mask_predictor.*)"
)
"""The keys of a Mask R-CNN state dict, as error messages name them."""


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
    fpn_channels: int = 256,
    returned_layers: Sequence[int] = (1, 2, 3, 4),
    box_head_size: int = 1024,
    mask_roi_size: int = 14,
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
    fpn_channels : int
        Channels of the FPN and of every head on top of it (torchvision: 256).
    returned_layers : sequence of int
        ResNet stages feeding the FPN (torchvision: 1, 2, 3, 4). Small nuclei need no
        stage 4; dropping it removes most of a ResNet-18's weights. ``anchor_sizes`` needs
        one entry per returned stage plus one for the extra pooled level.
    box_head_size : int
        Width of the two fully connected layers of the box head (torchvision: 1024).
    mask_roi_size : int
        Side of the feature grid the mask head reads for each object (torchvision: 14), so
        its masks have twice that side. The mask head is convolutional, so a model trained
        at one size runs at another: a finer grid draws finer outlines (the demo Mask
        R-CNN, trained at 14, scores higher at 21; ``sample_data/README.md``).
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
    returned_layers = tuple(int(layer) for layer in returned_layers)
    if not returned_layers or not set(returned_layers) <= {1, 2, 3, 4}:
        raise ModelBuildError(f"returned_layers must be ResNet stages 1-4, got {returned_layers}")
    n_levels = len(returned_layers) + 1
    if len(anchor_sizes) != n_levels:
        raise ModelBuildError(
            f"anchor_sizes needs one entry per FPN level ({n_levels}), got {len(anchor_sizes)}"
        )
    if len({len(level) for level in anchor_sizes}) != 1:
        raise ModelBuildError("every FPN level needs the same number of anchor sizes")
    mask_roi_size = int(mask_roi_size)
    if not 7 <= mask_roi_size <= 56:
        raise ModelBuildError(f"mask_roi_size must be between 7 and 56, got {mask_roi_size}")
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
    compact = (fpn_channels, returned_layers, box_head_size) != (256, (1, 2, 3, 4), 1024)
    if compact and variant == "v2":
        raise ModelBuildError("fpn_channels, returned_layers and box_head_size need variant v1")
    common = {
        "box_detections_per_img": int(detections_per_img),
        "min_size": int(min_size),
        "max_size": int(max_size),
    }
    if compact:
        model = _compact_maskrcnn(
            backbone, num_classes, anchors, fpn_channels, returned_layers, box_head_size, common
        )
    elif backbone == "resnet50" and n_anchors == 3:
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
    if mask_hidden_channels != 256 or compact:
        model.roi_heads.mask_predictor = MaskRCNNPredictor(
            fpn_channels, mask_hidden_channels, num_classes
        )
    model.roi_heads.mask_roi_pool.output_size = (mask_roi_size, mask_roi_size)
    if local_file is not None:
        load_local_weights(model.backbone.body, local_file, what="backbone_weights")
    return model


def _compact_maskrcnn(
    backbone, num_classes, anchors, fpn_channels, returned_layers, box_head_size, common
) -> torch.nn.Module:
    """A Mask R-CNN with a narrower FPN and heads, and optionally fewer ResNet stages."""
    from torchvision.models import resnet
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    body = getattr(resnet, backbone)(weights=None)
    stage_channels = body.inplanes // 8  # 64 for basic blocks, 256 for bottlenecks
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
    in_channels = [stage_channels * 2 ** (k - 1) for k in returned_layers]
    fpn = BackboneWithFPN(
        body, return_layers, in_channels, fpn_channels, extra_blocks=LastLevelMaxPool()
    )
    resolution = 7
    return MaskRCNN(
        fpn,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
        box_head=TwoMLPHead(fpn_channels * resolution**2, box_head_size),
        box_predictor=FastRCNNPredictor(box_head_size, num_classes),
        mask_head=MaskRCNNHeads(fpn_channels, (fpn_channels,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(fpn_channels, 256, num_classes),  # resized by caller
        **common,
    )


# -- card conventions ----------------------------------------------------------------------
def default_outputs(builder_args: dict[str, Any]) -> tuple[list[str], str | None]:
    """The classes (index 0 = background) and no activation."""
    num_classes = int(builder_args.get("num_classes", 2))
    names = (
        ["background", "object"]
        if num_classes == 2
        else ["background", *[f"class_{i}" for i in range(1, num_classes)]]
    )
    return names, None


def input_channels(builder_args: dict[str, Any]) -> int:
    """The channels the network takes: always RGB."""
    return 3


def architecture(builder_args: dict[str, Any]) -> str:
    """Short architecture name, e.g. ``resnet50-v1``."""
    backbone = builder_args.get("backbone", "resnet50")
    return f"{backbone}-{builder_args.get('variant', 'v1')}"


# -- foreign files -------------------------------------------------------------------------
def claims_state_dict(keys: Set[str]) -> bool:
    """Whether a bare state dict with ``keys`` looks like a torchvision R-CNN."""
    return any(k.startswith("backbone.body.") for k in keys) and any(
        k.startswith("roi_heads.") for k in keys
    )


_RESNETS = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
}


def infer_builder_args(state: StateDict, path: str | Path) -> dict[str, Any]:
    """The builder arguments of a torchvision Mask R-CNN state dict (torchvision's anchors)."""
    keys = list(state)
    if "roi_heads.mask_predictor.mask_fcn_logits.weight" not in state:
        raise WeightFileError(
            path,
            "unknown architecture: a detection model without a mask head (Faster R-CNN?); "
            "expected roi_heads.mask_predictor.mask_fcn_logits.weight of a Mask R-CNN",
        )
    depths = tuple(len(block_indices(keys, f"backbone.body.layer{n}.")) for n in (1, 2, 3, 4))
    bottleneck = "backbone.body.layer1.0.conv3.weight" in state
    backbone = _RESNETS.get((depths, bottleneck))
    if backbone is None:
        raise WeightFileError(
            path,
            f"unknown architecture: Mask R-CNN backbone with ResNet blocks {list(depths)} "
            "is not supported (ResNet-18, -34 or -50 FPN are)",
        )
    num_classes = int(state["roi_heads.box_predictor.cls_score.weight"].shape[0])
    mask_classes = int(state["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0])
    if mask_classes != num_classes:
        raise WeightFileError(
            path,
            f"shape mismatch: the box predictor has {num_classes} classes but the mask "
            f"predictor {mask_classes}",
        )
    n_anchors = int(state["rpn.head.cls_logits.weight"].shape[0])
    ratios = {3: (0.5, 1.0, 2.0), 1: (1.0,)}.get(n_anchors)
    if ratios is None:
        raise WeightFileError(
            path,
            f"unknown architecture: {n_anchors} anchors per location (supported: 1 or 3)",
        )
    return {
        "backbone": backbone,
        "variant": "v2" if "roi_heads.box_head.0.0.weight" in state else "v1",
        "num_classes": num_classes,
        # ConvTranspose2d weights are (in, out, k, k): the hidden width is dim 1.
        "mask_hidden_channels": int(state["roi_heads.mask_predictor.conv5_mask.weight"].shape[1]),
        # torchvision's defaults, which a tutorial-style fine-tune keeps:
        "anchor_sizes": [list(s) for s in TORCHVISION_ANCHOR_SIZES],
        "aspect_ratios": list(ratios),
        "min_size": 800,
        "max_size": 1333,
        "detections_per_img": 500,
    }
