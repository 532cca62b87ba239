"""Block-by-block segmentation: stitching is exact for objects smaller than the halo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from event_helpers import collect
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress
from napari_cellseg.inference.stitch import iter_stitch_blocks, plan_blocks
from napari_cellseg.labels.metrics import matching_at


def _blobs(shape: tuple[int, int], n: int, seed: int, max_radius: int = 9) -> np.ndarray:
    """A binary image of random, possibly touching-free disks of radius 3..max_radius."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(3, max_radius + 1)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return mask


def _run(mask: np.ndarray, out: np.ndarray, **kwargs):
    def segment_region(block):
        yield Progress("inner", 1, 1)
        return ndimage.label(mask[block.region])[0]

    return collect(iter_stitch_blocks(out, segment_region, **kwargs))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a renumbering of the objects."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_plan_blocks_cover_the_plane_once_with_halo_clipped_at_borders() -> None:
    blocks = plan_blocks((300, 250), 128, 20)
    cover = np.zeros((300, 250), int)
    for b in blocks:
        cover[b.y0 : b.y1, b.x0 : b.x1] += 1
        assert b.ey0 == max(0, b.y0 - 20) and b.ex1 == min(250, b.x1 + 20)
    assert (cover == 1).all() and len(blocks) == 6
    with pytest.raises(CellsegError, match="block size"):
        plan_blocks((10, 10), 8, 2)
    with pytest.raises(CellsegError, match="halo"):
        plan_blocks((10, 10), 64, -1)


@pytest.mark.parametrize("block_size", [40, 64, 97])
def test_blockwise_labels_equal_whole_plane_labels(block_size: int) -> None:
    mask = _blobs((230, 190), 120, seed=block_size)
    whole, n = ndimage.label(mask)
    out = np.zeros(mask.shape, np.uint32)
    stats, events = _run(mask, out, block_size=block_size, halo=40)
    assert _same_partition(whole, out)
    assert stats.objects == n == out.max() and len(np.unique(out)) == n + 1  # ids 1..n
    assert stats.cut == 0 and stats.duplicates == 0
    blocks = [e for e in events if isinstance(e, Progress) and e.stage == "blocks"]
    assert [e.done for e in blocks] == list(range(1, stats.blocks + 1))
    assert sum(isinstance(e, Progress) and e.stage == "inner" for e in events) == stats.blocks


def test_objects_larger_than_the_halo_are_kept_counted_and_reported() -> None:
    mask = np.zeros((120, 120), bool)
    mask[10:110, 55:65] = True  # a 100 px bar across the block border at y=60
    out = np.zeros(mask.shape, np.uint32)
    stats, events = _run(mask, out, block_size=60, halo=8)
    assert stats.cut >= 1
    assert (out[mask] > 0).mean() > 0.5 and (out[~mask] == 0).all()
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("raise the halo" in m for m in notices)


def test_a_segmenter_disagreeing_between_blocks_never_duplicates_objects() -> None:
    """Each block sees the objects shifted by one pixel: objects near borders are seen
    twice with their centroids in two cores; the later one must be dropped."""
    mask = _blobs((200, 200), 80, seed=3)
    calls = iter(range(1000))

    def segment_region(block):
        shift = next(calls) % 2
        yield from ()
        return ndimage.label(np.roll(mask, shift, axis=1)[block.region])[0]

    out = np.zeros(mask.shape, np.uint32)
    stats, _ = collect(iter_stitch_blocks(out, segment_region, block_size=50, halo=30))
    whole = ndimage.label(mask)[0]
    assert matching_at(whole, out, 0.5)["f1"] > 0.95
    assert len(np.unique(out)) - 1 == stats.objects


def test_stop_between_blocks_and_wrong_region_shapes() -> None:
    mask = _blobs((100, 100), 20, seed=1)
    out = np.zeros(mask.shape, np.uint32)
    with pytest.raises(CancelledError):
        _run(mask, out, block_size=50, halo=10, should_stop=lambda: True)

    def bad(block):
        yield from ()
        return np.zeros((3, 3), np.int32)

    gen = iter_stitch_blocks(out, bad, block_size=50, halo=10)
    with pytest.raises(CellsegError, match="shape"):
        list(gen)
