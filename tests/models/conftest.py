from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tutorial_maskrcnn():
    """Factory fixture: ``tutorial_maskrcnn(num_classes, hidden_layer)``."""
    return _tutorial_maskrcnn


def _tutorial_maskrcnn(num_classes: int, hidden_layer: int = 256) -> torch.nn.Module:
    """A Mask R-CNN built exactly like torchvision's detection fine-tuning tutorial.

    The tutorial starts from COCO weights, which makes torchvision use FrozenBatchNorm2d in
    the backbone; we reproduce that module structure offline (random values).
    """
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
    from torchvision.ops import FrozenBatchNorm2d

    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = MaskRCNN(_resnet_fpn_extractor(body, 3), num_classes=91)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    in_features_mask = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(in_features_mask, hidden_layer, num_classes)
    return model
