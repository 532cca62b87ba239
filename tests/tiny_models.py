"""The tiny, randomly initialised models the tests use (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

TINY_UNET = {
    "encoder_name": "resnet18",
    "in_channels": 3,
    "classes": 3,
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}
TINY_MASKRCNN = {
    "backbone": "resnet18",
    "fpn_channels": 32,
    "returned_layers": [1, 2],
    "box_head_size": 64,
    "mask_hidden_channels": 32,
    "anchor_sizes": [[8], [16], [32]],
    "min_size": 128,
    "max_size": 128,
    "detections_per_img": 40,
}


def save_tiny(family: str, path: Path, *, seed: int = 0) -> Path:
    """Build the tiny model of ``family`` with a fixed seed and save it with its card."""
    import torch

    from napari_cellseg.models import ModelCard, build_model, save_weights

    torch.manual_seed(seed)
    args = TINY_UNET if family == "unet" else TINY_MASKRCNN
    return save_weights(build_model(family, **args), ModelCard.for_model(family, args), path)
