"""Equivalent diameters: discs of known size, border and fragment rules."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk
from skimage.measure import regionprops

from napari_cellseg.labels.sizes import equivalent_diameters, median_diameter


@pytest.mark.parametrize("diameter", [8, 17, 40])
def test_discs_measure_their_diameter(diameter: int) -> None:
    labels = np.zeros((200, 200), np.int32)
    for i, centre in enumerate([(50, 50), (50, 140), (140, 95)], start=1):
        labels[disk(centre, diameter / 2, shape=labels.shape)] = i
    # a pixelated disc of radius r covers about pi r^2 pixels: within 10 % at 8 px
    assert median_diameter(labels) == pytest.approx(diameter, rel=0.1)
    skimage = [p.equivalent_diameter_area for p in regionprops(labels)]
    np.testing.assert_allclose(equivalent_diameters(labels), skimage)


def test_cut_objects_and_fragments_are_left_out_only_when_asked() -> None:
    labels = np.zeros((60, 60), np.int32)
    labels[disk((30, 30), 10, shape=labels.shape)] = 1  # whole, 20 px
    labels[0:4, 0:40] = 2  # cut by the border
    labels[50, 50] = 3  # one-pixel fragment
    assert len(equivalent_diameters(labels)) == 3
    assert equivalent_diameters(labels, exclude_border=True, min_area=4) == pytest.approx(
        [20], 0.05
    )
    only_cut = np.zeros((20, 20), np.int32)
    only_cut[:5, :5] = 1
    assert median_diameter(only_cut, exclude_border=True) == pytest.approx(np.sqrt(100 / np.pi))
