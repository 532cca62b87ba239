"""Fixtures shared by the inference tests: the demo U-Net and real planes to stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_cellseg.io.images import read_image
from napari_cellseg.models.weights import load_weights

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def demo_unet():
    """The shipped demo U-Net, loaded once per test module."""
    return load_weights(SAMPLE / "models" / "unet_dsb.safetensors")


@pytest.fixture(scope="module")
def sample_planes() -> np.ndarray:
    """Five different real 256² planes (the fluorescence sample turned and flipped), T Y X."""
    grey = read_image(SAMPLE / "images" / "dsb_fluorescence.png").data[..., 0]
    views = [grey, np.rot90(grey), grey[::-1], np.rot90(grey, 3), grey[:, ::-1]]
    return np.stack(views).copy()
