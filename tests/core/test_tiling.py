"""Tiling invariants: coverage, exact blending, padding and instance stitching across seams."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage.draw import ellipse

from napari_cellseg.core.detections import Detections
from napari_cellseg.core.errors import CellsegError
from napari_cellseg.core.tiling import (
    WINDOW_FLOOR,
    Tile,
    TileBlender,
    blend_window,
    crop_padding,
    merge_tile_detections,
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


def _synthetic_labels(shape: tuple[int, int], seed: int, seams: list[int]) -> np.ndarray:
    """~20+ disjoint ellipses of many sizes, several centred on tile seams, one very large."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    big = (shape[0] / 2, shape[1] / 2, shape[0] / 3, shape[1] / 2.5)  # can be larger than a tile
    specs = [big]
    specs += [(rng.uniform(0, shape[0]), s, rng.uniform(3, 20), rng.uniform(3, 20)) for s in seams]
    specs += [
        (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), *rng.uniform(2, 30, 2))
        for _ in range(200)
    ]
    for cy, cx, ry, rx in specs:
        rr, cc = ellipse(cy, cx, ry, rx, shape, rotation=rng.uniform(0, np.pi))
        if len(rr) and not labels[rr, cc].any():
            labels[rr, cc] = labels.max() + 1
    return labels


def _fake_detector(labels: np.ndarray, tile: Tile) -> Detections:
    """What a perfect detector sees in ``tile``: every visible object, clipped, in tile pixels.

    Masks are soft (0.9 inside, 0.1 around) so the merge must threshold them.
    """
    crop = tile.view(labels)
    boxes, masks = [], []
    for lab in np.unique(crop[crop > 0]):
        ys, xs = np.nonzero(crop == lab)
        box = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        boxes.append(box)
        masks.append(np.where(crop[box[0] : box[2], box[1] : box[3]] == lab, 0.9, 0.1))
    n = len(boxes)
    scores = np.linspace(0.99, 0.5, n) if n else np.zeros(0)
    det = Detections(boxes, scores, np.ones(n), [m.astype(np.float32) for m in masks])
    return det.shifted(tile.y0, tile.x0)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), xs.min(), ys.max() + 1, xs.max() + 1


def _holds(tile: Tile, box: tuple[int, int, int, int]) -> bool:
    return tile.y0 <= box[0] and tile.x0 <= box[1] and box[2] <= tile.y1 and box[3] <= tile.x1


def _assert_each_object_once_and_whole(merged: Detections, labels: np.ndarray) -> None:
    found: list[int] = []
    for box, mask in zip(merged.boxes, merged.masks, strict=True):
        region = labels[box[0] : box[2], box[1] : box[3]]
        inside = region[mask > 0.5]
        assert inside.size and np.all(inside == inside[0]), "a detection mixes objects"
        lab = int(inside[0])
        np.testing.assert_array_equal(mask > 0.5, region == lab)  # whole, nothing more
        assert (labels == lab).sum() == (mask > 0.5).sum(), f"object {lab} is not whole"
        found.append(lab)
    assert sorted(found) == list(range(1, labels.max() + 1)), "objects missing or repeated"


@pytest.mark.parametrize(
    ("shape", "tile_size", "overlap", "seed"),
    [
        ((200, 260), 96, 32, 0),
        ((200, 260), 96, 32, 1),
        ((240, 240), 80, 16, 2),  # many objects bigger than the overlap
        ((150, 333), 128, 64, 3),
        ((120, 127), 128, 32, 4),  # one tile
        ((180, 180), 64, 8, 5),  # narrow overlap: straddling objects are cut in all tiles
    ],
)
def test_merge_tile_detections_fake_detector(
    shape: tuple[int, int], tile_size: int, overlap: int, seed: int
) -> None:
    tiles = plan_tiles(shape, tile_size, overlap)
    seams = sorted({t.x0 for t in tiles if t.x0} | {t.x1 for t in tiles if t.x1 < shape[1]})
    labels = _synthetic_labels(shape, seed, seams)
    assert labels.max() >= (20 if len(tiles) > 1 else 10)
    parts = [(t, _fake_detector(labels, t)) for t in tiles]
    if len(tiles) > 1:
        boxes = {lab: _bbox(labels == lab) for lab in range(1, labels.max() + 1)}
        whole_in_no_tile = [lab for lab, b in boxes.items() if not any(_holds(t, b) for t in tiles)]
        assert whole_in_no_tile, "the test should need the union of fragments"
        assert any(len(d) for _, d in parts)
        assert sum(len(d) for _, d in parts) > labels.max()  # there really are duplicates
    merged = merge_tile_detections(parts, shape)
    _assert_each_object_once_and_whole(merged, labels)
    assert merged.scores.dtype == np.float32 and np.all(merged.classes == 1)


def test_merge_keeps_overlapping_objects_of_one_tile() -> None:
    tile = plan_tiles((40, 80), 48, 16)[0]
    a = np.ones((20, 20), np.float32)
    det = Detections([[5, 5, 25, 25], [7, 7, 27, 27]], [0.9, 0.8], [1, 1], [a, a.copy()])
    other = Detections()
    merged = merge_tile_detections(
        [(tile, det), (plan_tiles((40, 80), 48, 16)[1], other)], (40, 80)
    )
    assert len(merged) == 2
    np.testing.assert_array_equal(merged.boxes, det.boxes)


def test_merge_keeps_the_most_central_whole_copy() -> None:
    """An object inside the overlap is seen whole by both tiles: keep the more central copy."""
    left, right = plan_tiles((20, 60), 40, 20)
    mask = np.ones((6, 6), np.float32)
    near_left_border = Detections([[7, 22, 13, 28]], [0.6], [1], [mask])  # 12 px from right edge
    near_right_border = Detections([[7, 22, 13, 28]], [0.9], [2], [mask])  # 2 px from left edge
    merged = merge_tile_detections([(left, near_left_border), (right, near_right_border)], (20, 60))
    assert len(merged) == 1 and merged.classes[0] == 1  # the left tile's copy is more central


def test_merge_clips_to_tiles_and_validates() -> None:
    tile = Tile(0, 0, 10, 10)
    det = Detections(
        [[-2, 5, 4, 14], [12, 12, 15, 15]],
        [0.5, 0.5],
        [1, 1],
        [
            np.ones((6, 9), np.float32),
            np.ones((3, 3), np.float32),
        ],
    )
    merged = merge_tile_detections([(tile, det)], (10, 10))
    assert merged.boxes.tolist() == [[0, 5, 4, 10]] and merged.masks[0].shape == (4, 5)
    assert len(merge_tile_detections([], (10, 10))) == 0
    with pytest.raises(CellsegError, match="outside"):
        merge_tile_detections([(Tile(0, 0, 12, 10), Detections())], (10, 10))


def test_merge_without_overlap_keeps_fragments() -> None:
    """With overlap 0 no tile sees past a seam: cut objects stay as fragments, none is lost."""
    shape = (128, 128)
    tiles = plan_tiles(shape, 64, 0)
    labels = _synthetic_labels(shape, 6, [64])
    merged = merge_tile_detections([(t, _fake_detector(labels, t)) for t in tiles], shape)
    covered = np.zeros(shape, int)
    for box, mask in zip(merged.boxes, merged.masks, strict=True):
        covered[box[0] : box[2], box[1] : box[3]] += mask > 0.5
    np.testing.assert_array_equal(covered, labels > 0)
    assert len(merged) > labels.max()
