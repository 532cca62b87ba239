"""Helpers of the batch tests: a tiny random U-Net and synthetic disk images."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from napari_cellseg.params import PostprocessParams, PredictParams
from tiny_models import TINY_UNET as UNET_ARGS

# Small tiles keep it fast; a random model at this threshold finds several objects on disks.
PARAMS = PredictParams(
    device="cpu", tile_size=64, overlap=8, post=PostprocessParams(prob_threshold=0.7, min_size=5)
)


def save_tiny_unet(path: Path, seed: int = 0) -> Path:
    """A tiny random U-Net weight file (with its model card)."""
    import torch

    from napari_cellseg.models import ModelCard, build_model, save_weights

    torch.manual_seed(seed)
    return save_weights(
        build_model("unet", **UNET_ARGS), ModelCard.for_model("unet", UNET_ARGS), path
    )


def disk_image(seed: int, size: int = 96) -> np.ndarray:
    """A grey uint8 image of bright disks on a dark, slightly noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = rng.integers(0, 20, (size, size)).astype(np.uint8)
    for cy in range(12, size, 24):
        for cx in range(12, size, 24):
            dy, dx = rng.integers(-3, 4, 2)
            radius = rng.integers(6, 10)
            image[(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 < radius**2] = rng.integers(150, 250)
    return image


def write_png(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, data)
    return path


def write_tif(path: Path, data: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, **kwargs)
    return path


def tmp_files(folder: Path) -> list[Path]:
    """Temporary files an atomic write would leave behind if it were cut short."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
