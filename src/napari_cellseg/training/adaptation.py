"""AdaBN: re-estimate a model's BatchNorm statistics on new images before fine-tuning.

A network trained on fluorescence nuclei carries BatchNorm means and variances of
fluorescence features; on H&E tissue every layer then sees inputs off its learnt range.
Forwarding the user's own images through the network with BatchNorm in training mode and a
cumulative average (``momentum=None``) replaces those statistics with the new domain's
(Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", 2016); the
fast recipe then trains with them frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_cellseg.families import family_part
from napari_cellseg.training.scale import resize_channels

__all__ = ["adapt_batchnorm", "adapted", "tiles_for_statistics"]


def tiles_for_statistics(image: np.ndarray, factor: float, tile: int, limit: int) -> np.ndarray:
    """Up to ``limit`` ``(C, tile, tile)`` tiles covering ``image`` rescaled by ``factor``.

    The image is resampled so its objects come out at the training diameter, reflected up to
    whole tiles and cut on a grid (spread over the image when there are more than ``limit``).

    Examples
    --------
    >>> tiles_for_statistics(np.zeros((3, 100, 300), np.float32), 1.0, 64, 8).shape
    (8, 3, 64, 64)
    >>> tiles_for_statistics(np.zeros((1, 40, 40), np.float32), 2.0, 64, 8).shape
    (4, 1, 64, 64)
    """
    c, h, w = image.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    scaled = resize_channels(np.asarray(image, np.float32), size)
    ny, nx = -(-size[0] // tile), -(-size[1] // tile)
    pad = ((0, 0), (0, ny * tile - size[0]), (0, nx * tile - size[1]))
    fits = all(p[1] < s for p, s in zip(pad[1:], size, strict=True))
    padded = np.pad(scaled, pad, mode="reflect" if min(size) > 1 and fits else "edge")
    tiles = padded.reshape(c, ny, tile, nx, tile).transpose(1, 3, 0, 2, 4)
    tiles = tiles.reshape(-1, c, tile, tile)
    if len(tiles) > limit:
        tiles = tiles[np.linspace(0, len(tiles) - 1, limit).round().astype(int)]
    return np.ascontiguousarray(tiles)


def _forward(model: torch.nn.Module, images: torch.Tensor) -> None:
    model(images)


def adapt_batchnorm(
    model: torch.nn.Module,
    family: str,
    images: Sequence[np.ndarray],
    factors: Sequence[float],
    device: torch.device | str = "cpu",
    *,
    tile: int = 256,
    tiles_per_image: int = 8,
) -> int:
    """Replace every BatchNorm layer's running statistics by those of ``images``.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its mode (train/eval) is restored afterwards.
    family : str
        Its family: the training part's ``features`` forwards a batch of tiles.
    images : sequence of numpy.ndarray
        Network inputs ``(C, H, W)`` float32 (normalised as the model expects).
    factors : sequence of float
        Each image's rescaling to the training object diameter (1: none).
    device : torch.device or str
        Where the model is.
    tile, tiles_per_image : int
        Tile side and the most tiles taken from each image.

    Returns
    -------
    int
        The number of BatchNorm layers re-estimated (0: the model has none; nothing changed).
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers or not images:
        return 0
    was_training = model.training
    momenta = [layer.momentum for layer in layers]
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over all batches
        layer.train()
    forward = getattr(family_part(family, "training"), "features", None) or _forward
    try:
        with torch.no_grad():
            for image, factor in zip(images, factors, strict=True):
                tiles = tiles_for_statistics(image, factor, tile, tiles_per_image)
                forward(model, torch.from_numpy(tiles).to(device))
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)
    return len(layers)


def adapted(model: torch.nn.Module, dataset: Any, device: torch.device | str = "cpu") -> str:
    """:func:`adapt_batchnorm` on a training dataset's images (``dataset.images``, rescaled
    by ``dataset.factors``); the line that says so, or ``""`` when the model has no
    BatchNorm layer."""
    layers = adapt_batchnorm(model, dataset.family, dataset.images, dataset.factors, device)
    if not layers:
        return ""
    return (
        f"BatchNorm statistics re-estimated on the {len(dataset.images)} training images "
        f"({layers} layers, AdaBN)"
    )
