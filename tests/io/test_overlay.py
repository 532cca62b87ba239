from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.overlay import label_overlay, to_display_rgb, write_overlay_png


def test_outlines_are_drawn_only_on_object_borders() -> None:
    image = np.zeros((20, 20), np.uint16)
    labels = np.zeros((20, 20), np.uint16)
    labels[5:15, 5:15] = 1
    rgb = label_overlay(image, labels, colour=(255, 0, 0))
    assert rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[5, 10]) == (255, 0, 0)  # border pixel
    assert tuple(rgb[10, 10]) == (0, 0, 0)  # interior untouched
    assert tuple(rgb[0, 0]) == (0, 0, 0)


def test_display_rgb_handles_rgba_and_flat_images() -> None:
    rgba = np.full((4, 4, 4), 7, np.uint8)
    assert to_display_rgb(rgba).shape == (4, 4, 3)
    with pytest.raises(CellsegError, match="2-D grey or RGB"):
        to_display_rgb(np.zeros((2, 4, 4, 4)))


def test_overlay_png_is_written(tmp_path) -> None:
    import imageio.v3 as iio

    labels = np.zeros((8, 8), np.uint16)
    labels[2:6, 2:6] = 3
    path = write_overlay_png(tmp_path / "o.png", np.random.default_rng(0).random((8, 8)), labels)
    assert iio.imread(path).shape == (8, 8, 3)
    with pytest.raises(CellsegError, match="do not match"):
        label_overlay(np.zeros((8, 9)), labels)
