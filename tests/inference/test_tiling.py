"""Tiling invariants: coverage, exact blending and padding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference.tiling import (
    WINDOW_FLOOR,
    Tile,
    TileBlender,
    blend_window,
    crop_padding,
    pad_to_multiple,
    plan_tiles,
)

# (shape, tile_size, overlap): smaller than a tile, 1 x N, tile == image, overlap 0, ...
CASES = [
    ((1, 1), 1, 0),
    ((1, 1), 16, 4),
    ((1, 50), 16, 4),
    ((50, 1), 16, 15),
    ((1, 300), 64, 0),
    ((7, 300), 64, 32),
    ((64, 64), 64, 16),
    ((64, 65), 64, 16),
    ((100, 37), 32, 8),
    ((256, 256), 256, 64),
    ((300, 257), 128, 0),
    ((300, 257), 128, 100),
    ((517, 389), 96, 33),
    ((40, 200), 256, 64),
    ((95, 97), 48, 24),
]


@pytest.mark.parametrize(("shape", "tile_size", "overlap"), CASES)
def test_plan_tiles_cover_the_image(shape: tuple[int, int], tile_size: int, overlap: int) -> None:
    tiles = plan_tiles(shape, tile_size, overlap)
    count = np.zeros(shape, int)
    for t in tiles:
        assert t.inside(shape)
        assert t.shape == (min(tile_size, shape[0]), min(tile_size, shape[1]))
        assert t.inner == (t.y0 > 0, t.x0 > 0, t.y1 < shape[0], t.x1 < shape[1])
        count[t.slices] += 1
    assert count.min() >= 1
    assert len(set(tiles)) == len(tiles)
    # neighbouring tile starts are at most one stride apart: overlaps are >= overlap
    for axis in (0, 1):
        starts = sorted({(t.y0, t.x0)[axis] for t in tiles})
        assert all(b - a <= tile_size - overlap for a, b in itertools.pairwise(starts))


def test_plan_tiles_example() -> None:
    tiles = plan_tiles((300, 200), 128, 32)
    assert [(t.y0, t.y1) for t in tiles[::2]] == [(0, 128), (96, 224), (172, 300)]
    assert [(t.x0, t.x1) for t in tiles[:2]] == [(0, 128), (72, 200)]
    assert tiles[0].inner == (False, False, True, True)
    assert tiles[-1].inner == (True, True, False, False)


@pytest.mark.parametrize(
    ("tile_size", "overlap", "shape"),
    [(0, 0, (10, 10)), (16, 16, (10, 10)), (16, 20, (10, 10)), (16, -1, (10, 10)), (8, 2, (0, 5))],
)
def test_plan_tiles_rejects_nonsense(tile_size: int, overlap: int, shape: tuple[int, int]) -> None:
    with pytest.raises(CellsegError):
        plan_tiles(shape, tile_size, overlap)


@pytest.mark.parametrize(("shape", "tile_size", "overlap"), CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_blender_reproduces_identity_model(
    shape: tuple[int, int], tile_size: int, overlap: int, channels: int
) -> None:
    image = np.random.default_rng(0).normal(size=(channels, *shape)).astype(np.float32)
    blender = TileBlender(channels, shape, overlap)
    for t in plan_tiles(shape, tile_size, overlap):
        blender.add(t, t.view(image))
    np.testing.assert_allclose(blender.result(), image, atol=1e-5)


def test_blender_extreme_overlap() -> None:
    """Stride 1: thousands of tiles per pixel; float64 accumulators stay exact."""
    shape, tile_size, overlap = (40, 37), 16, 15
    image = np.random.default_rng(2).normal(size=(2, *shape))
    for dtype, tol in [(np.float64, 1e-10), (np.float32, 1e-4)]:
        blender = TileBlender(2, shape, overlap, dtype=dtype)
        for t in plan_tiles(shape, tile_size, overlap):
            blender.add(t, t.view(image))
        assert blender.result().dtype == dtype
        np.testing.assert_allclose(blender.result(), image, atol=tol)


def test_blender_seams_are_smooth() -> None:
    """Two tiles answering 0 and 1: the blend ramps monotonically across the overlap."""
    shape, tile_size, overlap = (10, 60), 40, 20
    tiles = plan_tiles(shape, tile_size, overlap)
    assert len(tiles) == 2
    blender = TileBlender(1, shape, overlap)
    for value, t in enumerate(tiles):
        blender.add(t, np.full(t.shape, float(value), np.float32))
    row = blender.result()[0, 5]
    assert np.all(np.diff(row) >= 0)
    assert row[: tiles[1].x0].max() == 0 and row[tiles[0].x1 :].min() == 1
    band = row[tiles[1].x0 : tiles[0].x1]
    assert band[1] > 0 and band[-2] < 1 and np.all(np.diff(band) < 0.2)


def test_blender_rejects_bad_input() -> None:
    blender = TileBlender(2, (10, 10), 2)
    with pytest.raises(ValueError, match="does not match"):
        blender.add(Tile(0, 0, 5, 5), np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="outside"):
        blender.add(Tile(8, 8, 13, 13), np.zeros((2, 5, 5)))
    blender.add(Tile(0, 0, 5, 5), np.zeros((2, 5, 5)))
    with pytest.raises(CellsegError, match="not covered"):
        blender.result()


@pytest.mark.parametrize(("shape", "overlap"), [((1, 1), 5), ((1, 9), 3), ((64, 48), 16)])
@pytest.mark.parametrize("sides", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_blend_window(shape: tuple[int, int], overlap: int, sides: tuple[bool, ...]) -> None:
    top, left, bottom, right = sides
    w = blend_window(*shape, overlap, top=top, left=left, bottom=bottom, right=right)
    assert w.shape == shape and w.dtype == np.float32
    assert w.min() >= WINDOW_FLOOR and w.max() == 1
    assert w[shape[0] // 2, shape[1] // 2] == 1
    if not top:
        assert np.all(w[0] == w[shape[0] // 2])
    if all(sides) and shape[0] > 2 * overlap:
        assert w[0, shape[1] // 2] < 1 and np.allclose(w, w[::-1, ::-1])


def test_blend_window_ramps_sum_to_one() -> None:
    """Where two tiles overlap by exactly ``overlap`` pixels, their weights sum to 1."""
    overlap = 8
    right_side = blend_window(1, 32, overlap, top=False, bottom=False, left=False)[0, -overlap:]
    left_side = blend_window(1, 32, overlap, top=False, bottom=False, right=False)[0, :overlap]
    np.testing.assert_allclose(right_side + left_side, 1, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (3, 31, 33), (2, 32, 64)])
@pytest.mark.parametrize("mode", ["reflect", "constant", "edge"])
def test_pad_to_multiple_roundtrip(shape: tuple[int, ...], mode: str) -> None:
    array = np.random.default_rng(1).random(shape)
    padded, pad = pad_to_multiple(array, 32, mode)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert pad == (padded.shape[-2] - shape[-2], padded.shape[-1] - shape[-1])
    np.testing.assert_array_equal(crop_padding(padded, pad), array)
    if pad == (0, 0):
        assert padded is array
    with pytest.raises(CellsegError):
        pad_to_multiple(array, 0)


# ---------------------------------------------------------------- seam stitching


@pytest.mark.parametrize(("shape", "tile_size", "overlap"), CASES)
@pytest.mark.parametrize("multiple", [1, 8, 32])
def test_even_tiles_cover_with_the_overlap_asked(
    shape: tuple[int, int], tile_size: int, overlap: int, multiple: int
) -> None:
    tiles = plan_tiles(shape, tile_size, overlap, multiple=multiple)
    count = np.zeros(shape, int)
    for t in tiles:
        assert t.inside(shape) and t.shape == tiles[0].shape  # all of one size
        assert max(t.shape) <= tile_size + overlap
        assert t.inner == (t.y0 > 0, t.x0 > 0, t.y1 < shape[0], t.x1 < shape[1])
        count[t.slices] += 1
    assert count.min() >= 1 and len(set(tiles)) == len(tiles)
    for axis in (0, 1):
        side = tiles[0].shape[axis]
        starts = sorted({(t.y0, t.x0)[axis] for t in tiles})
        assert all(b - a <= side - overlap for a, b in itertools.pairwise(starts))
        # the fewest tiles (or one more, to avoid padding): two fewer could not hold it
        n = len(starts)
        assert (n - 2) * tile_size + overlap < shape[axis] or n == 1
        if n > 1 and side < tile_size + overlap:
            assert side % multiple == 0


def test_even_tiles_cost_fewer_pixels_than_fixed_ones() -> None:
    """Issue 21: 1024² cost 9 tiles of 512² (2.25× its pixels), 520×696 4 of 512² (2.9×)."""
    for shape, old_ratio, new_ratio in [((1024, 1024), 2.25, 1.13), ((520, 696), 2.9, 1.10)]:
        pixels = {}
        for multiple in (None, 32):
            tiles = plan_tiles(shape, 512, 64, multiple=multiple)
            pixels[multiple] = sum(t.shape[0] * t.shape[1] for t in tiles)
        assert pixels[None] / np.prod(shape) == pytest.approx(old_ratio, abs=0.01)
        assert pixels[32] / np.prod(shape) == pytest.approx(new_ratio, abs=0.01)
    assert len(plan_tiles((560, 576), 512, 64, multiple=32)) == 1  # fits: one tile
