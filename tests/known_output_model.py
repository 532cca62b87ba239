"""A "network" whose output we control: two cells joined by a band the default seeds cross.

Used by the threshold-tuning tests: with the default boundary threshold (0.5) the band
joins the two cells' watershed seeds (one object); with 0.1 or less they stay apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel

# P(background, interior, boundary) the fake network gives to background (0), to the band
# between the cells (0.5) and to the cells' inside (1); linear in between.
PROBS = {0.0: (0.98, 0.01, 0.01), 0.5: (0.1, 0.6, 0.3), 1.0: (0.01, 0.985, 0.005)}


class KnownOutputNet(torch.nn.Module):
    """Maps the normalised image intensity to fixed class probabilities (as logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("unused", torch.zeros(1))  # something to save

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, :1].clamp(0, 1)
        p0, p5, p1 = (torch.tensor(PROBS[k]).view(1, 3, 1, 1) for k in (0.0, 0.5, 1.0))
        low = (1 - v / 0.5) * p0 + (v / 0.5) * p5
        high = (1 - (v - 0.5) / 0.5) * p5 + ((v - 0.5) / 0.5) * p1
        return torch.log(torch.where(v <= 0.5, low, high).clamp_min(1e-6))


def two_cells() -> tuple[np.ndarray, np.ndarray]:
    """A grey 64×64 image: two squares joined by a band at half intensity, and their truth."""
    image = np.zeros((64, 64), np.uint8)
    image[20:44, 10:30] = 200
    image[20:44, 34:54] = 200
    image[20:44, 30:34] = 100
    truth = np.zeros((64, 64), np.uint16)
    truth[20:44, 10:32] = 1
    truth[20:44, 32:54] = 2
    return image, truth


def known_model(**postprocess: float) -> LoadedModel:
    card = ModelCard.for_model("unet", {"encoder_name": "resnet18", "in_channels": 3, "classes": 3})
    card.postprocess = dict(postprocess)
    card.post_params()
    return LoadedModel(KnownOutputNet().eval(), card, Path("<known>"), "test")


class TrainableKnownNet(KnownOutputNet):
    """:class:`KnownOutputNet` with one parameter that never changes its output.

    Lets the training loop (which needs something to optimise) run it: whatever the
    optimiser does, the probabilities stay those of ``PROBS``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.0 * self.gain


def write_two_cells_folder(folder: Path, n: int = 2) -> Path:
    """A training folder (``images/`` and ``masks/``) of ``n`` copies of :func:`two_cells`."""
    import tifffile

    image, truth = two_cells()
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tifffile.imwrite(folder / "images" / f"cells{i}.tif", image)
        tifffile.imwrite(folder / "masks" / f"cells{i}.tif", truth)
    return folder
