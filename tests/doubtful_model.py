"""A fake U-Net whose augmented copies disagree on dim objects on the left of an image.

Its foreground probability is a steep step of the intensity at a threshold that rises from
0.3 at the tile's left edge to 0.7 at its right edge: bright objects are found wherever they
are, a dim one (half the intensity) only while it is on the left half, so the copies flipped
left-right miss a dim object that the image as it is shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel


class LeftLeaningNet(torch.nn.Module):
    """(background, interior, boundary) log-probabilities; interior = the foreground."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("unused", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, :1].clamp(0, 1)
        width = x.shape[-1]
        ramp = torch.linspace(0.3, 0.7, width, dtype=x.dtype).view(1, 1, 1, width)
        fg = torch.sigmoid(40 * (v - ramp))
        probs = torch.cat([1 - fg, fg, torch.full_like(fg, 1e-4)], dim=1)
        return torch.log(probs.clamp_min(1e-6))


def doubtful_model() -> LoadedModel:
    """The :class:`LeftLeaningNet` as a loaded 3-class U-Net."""
    card = ModelCard.for_model("unet", {"encoder_name": "resnet18", "in_channels": 3, "classes": 3})
    return LoadedModel(LeftLeaningNet().eval(), card, Path("<doubtful>"), "test")


def clear_image() -> np.ndarray:
    """64×64, three bright squares (every copy finds them)."""
    image = np.zeros((64, 64), np.uint8)
    for y, x in ((6, 6), (6, 40), (40, 24)):
        image[y : y + 16, x : x + 16] = 200
    return image


def ambiguous_image() -> np.ndarray:
    """Two bright squares and, on the left, one dim square (object 2 of the first copy)."""
    image = np.zeros((64, 64), np.uint8)
    image[4:20, 30:46] = 200
    image[40:56, 4:18] = 100  # dim, left: the copies flipped left-right miss it
    image[40:56, 40:56] = 200
    return image
