"""``flood`` gives the whole-plane watershed's labels (exactly, unless a tie is contested)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from napari_cellseg.inference import flooding
from napari_cellseg.inference.flooding import flood
from watershed_ties import assert_same_up_to_ties

_FULL = np.ones((3, 3), bool)


def _case(seed: int, shape=(96, 128), density=0.45, seeds=0.03, ties=True):
    """Blobby foreground with specks, 8-connected markers from random seeds, and a surface
    with many equal values (``ties``) or none."""
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random(shape), 2.0)
    foreground = smooth > np.quantile(smooth, 1 - density)
    foreground |= rng.random(shape) < 0.02  # specks, diagonal-only contacts
    markers, _ = ndi.label((rng.random(shape) < seeds) & foreground, structure=_FULL)
    surface = rng.random(shape)
    surface = np.round(surface * 8).astype(np.float32) if ties else surface
    return surface, markers.astype(np.int32), foreground


@pytest.mark.parametrize("seed", range(8))
def test_flood_is_the_watershed_up_to_contested_ties(seed: int) -> None:
    surface, markers, foreground = _case(seed)
    expected = watershed(surface, markers, mask=foreground)
    assert_same_up_to_ties(flood(surface, markers, foreground), expected)


@pytest.mark.parametrize("seed", range(4))
def test_flood_is_the_watershed_exactly_without_ties(seed: int) -> None:
    """Distinct values and no pixel next to two markers: nothing is left to the heap."""
    surface, _, foreground = _case(seed, ties=False)
    markers = np.zeros(foreground.shape, np.int32)
    grid = np.zeros(foreground.shape, bool)
    grid[::5, ::5] = True  # single-pixel markers 5 apart
    markers[grid & foreground] = np.arange(1, int((grid & foreground).sum()) + 1)
    expected = watershed(surface, markers, mask=foreground)
    np.testing.assert_array_equal(flood(surface, markers, foreground), expected)


def test_one_pass_for_wide_shared_components(monkeypatch) -> None:
    """Above the area switch the shared components are flooded in one watershed."""
    surface, markers, foreground = _case(3, density=0.7, seeds=0.05)
    expected = watershed(surface, markers, mask=foreground)
    calls = []
    real = flooding.watershed
    monkeypatch.setattr(flooding, "watershed", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert_same_up_to_ties(flood(surface, markers, foreground), expected)
    assert len(calls) == 1


def test_single_marker_components_need_no_watershed(monkeypatch) -> None:
    foreground = np.zeros((20, 20), bool)
    foreground[2:8, 2:8] = foreground[12:18, 12:18] = foreground[2:6, 14:18] = True
    markers = np.zeros((20, 20), np.int32)
    markers[4, 4], markers[15, 15] = 7, 3  # the third square has none: stays 0
    monkeypatch.setattr(flooding, "watershed", lambda *a, **k: pytest.fail("not needed"))
    out = flood(np.zeros((20, 20), np.float32), markers, foreground)
    assert set(np.unique(out[2:8, 2:8])) == {7} and set(np.unique(out[12:18, 12:18])) == {3}
    assert not out[2:6, 14:18].any() and not out[~foreground].any()


def test_empty_foreground() -> None:
    out = flood(np.zeros((5, 5)), np.zeros((5, 5), np.int64), np.zeros((5, 5), bool))
    assert out.dtype == np.int64 and not out.any()
