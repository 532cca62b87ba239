"""Inferring the architecture of a foreign state dict from its keys and tensor shapes.

Supports what users actually have: ``torch.save(model.state_dict())`` of an smp U-Net (any
smp encoder) and of a torchvision Mask R-CNN fine-tuned as in torchvision's detection
tutorial (ResNet-50 FPN v1/v2, or ResNet-18/34 FPN), with ``num_classes`` read from the
predictor shapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from napari_cellseg.errors import WeightFileError
from napari_cellseg.models.maskrcnn import TORCHVISION_ANCHOR_SIZES
from napari_cellseg.models.state_dict_io import StateDict

EXPECTED_KEYS = (
    "an smp U-Net (encoder.*, decoder.blocks.*, segmentation_head.0.weight) or a torchvision "
    "Mask R-CNN (backbone.body.*, backbone.fpn.*, rpn.head.*, roi_heads.box_predictor.*, "
    "roi_heads.mask_predictor.*)"
)
_RESNETS = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
}


def infer_architecture(
    state: StateDict, path: str | Path = "<state dict>"
) -> tuple[str, dict[str, Any]]:
    """Return ``(family, builder_args)`` for a state dict without a model card.

    Raises
    ------
    WeightFileError
        When the keys match no supported architecture (the message lists what was
        expected and a few of the keys found).
    """
    keys = set(state)
    if "segmentation_head.0.weight" in keys and any(k.startswith("encoder.") for k in keys):
        return "unet", _infer_unet(state, path)
    if any(k.startswith("backbone.body.") for k in keys) and any(
        k.startswith("roi_heads.") for k in keys
    ):
        return "maskrcnn", _infer_maskrcnn(state, path)
    sample = ", ".join(sorted(keys)[:4]) or "none"
    raise WeightFileError(
        path, f"unknown architecture: expected {EXPECTED_KEYS}; found keys like {sample}"
    )


def _block_indices(keys: Iterable[str], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})


def _infer_unet(state: StateDict, path: str | Path) -> dict[str, Any]:
    keys = list(state)
    blocks = _block_indices(keys, "decoder.blocks.")
    if not blocks:
        raise WeightFileError(
            path, f"unknown architecture: U-Net without decoder blocks; expected {EXPECTED_KEYS}"
        )
    decoder_channels = []
    for i in blocks:
        weight = state.get(f"decoder.blocks.{i}.conv1.0.weight")
        if weight is None:
            raise WeightFileError(
                path,
                f"unknown architecture: expected decoder.blocks.{i}.conv1.0.weight in an smp U-Net",
            )
        decoder_channels.append(int(weight.shape[0]))
    stem = next((v for k, v in state.items() if k.startswith("encoder.") and v.ndim == 4), None)
    if stem is None:
        raise WeightFileError(path, "unknown architecture: U-Net encoder without convolutions")
    args: dict[str, Any] = {
        "in_channels": int(stem.shape[1]),
        "classes": int(state["segmentation_head.0.weight"].shape[0]),
        "encoder_depth": len(blocks),
        "decoder_channels": decoder_channels,
        "decoder_attention_type": "scse" if any(".attention1." in k for k in keys) else None,
        "decoder_use_norm": "batchnorm"
        if "decoder.blocks.0.conv1.1.running_mean" in state
        else ("batchnorm" if "decoder.blocks.0.conv1.1.weight" in state else False),
    }
    args["encoder_name"] = _match_smp_encoder(state, args["in_channels"], len(blocks), path)
    return args


def _match_smp_encoder(state: StateDict, in_channels: int, depth: int, path: str | Path) -> str:
    """Find the smp encoder whose parameter names and shapes equal the file's."""
    import warnings

    import segmentation_models_pytorch as smp

    wanted = {
        k[len("encoder.") :]: tuple(v.shape) for k, v in state.items() if k.startswith("encoder.")
    }
    for name in smp.encoders.get_encoder_names():
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                encoder = smp.encoders.get_encoder(
                    name, in_channels=in_channels, depth=depth, weights=None
                )
        except Exception:  # some encoders cannot be built for this depth / on meta
            continue
        own = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
        if own == wanted:
            return name
    first = ", ".join(f"encoder.{k}" for k in list(wanted)[:3])
    raise WeightFileError(
        path,
        "unknown architecture: a U-Net whose encoder matches none of smp's encoders "
        f"(keys like {first}); save it with smp's save_pretrained or as a napari-cellseg "
        "weight file so its card names the encoder",
    )


def _infer_maskrcnn(state: StateDict, path: str | Path) -> dict[str, Any]:
    keys = list(state)
    if "roi_heads.mask_predictor.mask_fcn_logits.weight" not in state:
        raise WeightFileError(
            path,
            "unknown architecture: a detection model without a mask head (Faster R-CNN?); "
            "expected roi_heads.mask_predictor.mask_fcn_logits.weight of a Mask R-CNN",
        )
    depths = tuple(len(_block_indices(keys, f"backbone.body.layer{n}.")) for n in (1, 2, 3, 4))
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
