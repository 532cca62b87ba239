"""Stitching Mask R-CNN tile detections: each object once and whole across seams."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import ellipse

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.tile_merge import merge_tile_detections
from napari_cellseg.inference.tiling import Tile, plan_tiles


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
