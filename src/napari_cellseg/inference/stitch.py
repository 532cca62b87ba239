"""Instance labels of a plane too large for memory, made block by block and stitched.

The plane is cut into square *blocks*; each is segmented together with a *halo* of
surrounding pixels, so an object near a block's border is seen whole. An object belongs to
the block whose core holds its centroid. Objects of other blocks are ignored, and an object
already written by an earlier block (a neighbour saw almost the same object) is not written
again: only pixels still free are written, and an object that would keep less than
``min_free_fraction`` of its pixels is dropped as a duplicate. Labels are numbered 1, 2, …
in the order they are written, so the result never holds two objects with one id.

Objects up to ``halo`` pixels across are never cut. A larger object that reaches the edge of
the region its block saw is still written, and counted in :attr:`StitchStats.cut`.

This module knows nothing about models: :func:`iter_stitch_blocks` takes a function that
segments one region. See :mod:`napari_cellseg.inference.blocks` for the model side.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress

__all__ = ["Block", "LabelStore", "StitchStats", "iter_stitch_blocks", "plan_blocks"]


class LabelStore(Protocol):
    """A 2-D array-like the stitcher reads and writes by slices (numpy, zarr, memmap)."""

    shape: tuple[int, ...]

    def __getitem__(self, key: Any) -> Any: ...

    def __setitem__(self, key: Any, value: Any) -> None: ...


@dataclass(frozen=True)
class Block:
    """One block: its core ``[y0, y1) x [x0, x1)`` and the region seen ``[ey0, ey1) x …``."""

    y0: int
    y1: int
    x0: int
    x1: int
    ey0: int
    ey1: int
    ex0: int
    ex1: int

    @property
    def region(self) -> tuple[slice, slice]:
        """Slices of the region segmented for this block (core plus halo)."""
        return slice(self.ey0, self.ey1), slice(self.ex0, self.ex1)

    def open_edges(self, shape: tuple[int, int]) -> tuple[bool, bool, bool, bool]:
        """Whether the region's top, bottom, left and right edges lie inside the plane."""
        return self.ey0 > 0, self.ey1 < shape[0], self.ex0 > 0, self.ex1 < shape[1]


def plan_blocks(shape: tuple[int, int], block_size: int, halo: int) -> list[Block]:
    """Cut a ``(Y, X)`` plane into blocks of at most ``block_size`` with a ``halo`` around.

    Examples
    --------
    >>> [(b.y0, b.y1, b.ey0, b.ey1) for b in plan_blocks((100, 40), 64, 8)]
    [(0, 64, 0, 72), (64, 100, 56, 100)]
    """
    if block_size < 16:
        raise CellsegError(f"block size must be at least 16 pixels, got {block_size}")
    if halo < 0:
        raise CellsegError(f"halo must be 0 or more pixels, got {halo}")
    height, width = (int(s) for s in shape)
    blocks = []
    for y0 in range(0, height, block_size):
        for x0 in range(0, width, block_size):
            y1, x1 = min(y0 + block_size, height), min(x0 + block_size, width)
            blocks.append(
                Block(
                    y0,
                    y1,
                    x0,
                    x1,
                    max(0, y0 - halo),
                    min(height, y1 + halo),
                    max(0, x0 - halo),
                    min(width, x1 + halo),
                )
            )
    return blocks


@dataclass
class StitchStats:
    """What the stitcher did: objects written, duplicates dropped, objects possibly cut."""

    objects: int = 0
    duplicates: int = 0
    cut: int = 0
    blocks: int = 0
    seconds_per_block: list[float] = field(default_factory=list)


def _owned_objects(
    labels: np.ndarray, block: Block, shape: tuple[int, int]
) -> list[tuple[int, tuple[slice, slice], bool]]:
    """(label, bbox slices in the region, touches an open edge) of the block's own objects."""
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.shape != (block.ey1 - block.ey0, block.ex1 - block.ex0):
        raise CellsegError(
            f"the block segmenter returned labels of shape {labels.shape}, expected "
            f"{(block.ey1 - block.ey0, block.ex1 - block.ex0)}"
        )
    boxes = ndimage.find_objects(labels)
    present = [i + 1 for i, box in enumerate(boxes) if box is not None]
    if not present:
        return []
    centroids = ndimage.center_of_mass(np.ones(labels.shape, np.uint8), labels, present)
    top, bottom, left, right = block.open_edges(shape)
    height, width = labels.shape
    owned = []
    for label, (cy, cx) in zip(present, centroids, strict=True):
        gy, gx = int(cy) + block.ey0, int(cx) + block.ex0
        if not (block.y0 <= gy < block.y1 and block.x0 <= gx < block.x1):
            continue
        ys, xs = boxes[label - 1]
        touches = (
            (top and ys.start == 0)
            or (bottom and ys.stop == height)
            or (left and xs.start == 0)
            or (right and xs.stop == width)
        )
        owned.append((label, (ys, xs), touches))
    return owned


def stitch_block(
    out: LabelStore,
    block: Block,
    labels: np.ndarray,
    next_id: int,
    stats: StitchStats,
    *,
    min_free_fraction: float = 0.5,
) -> tuple[np.ndarray, list[int]]:
    """Write the objects ``block`` owns from its region's ``labels`` into ``out``.

    Returns the region of ``out`` after writing, and the new ids written (from ``next_id``).
    """
    shape = tuple(int(s) for s in out.shape[-2:])
    owned = _owned_objects(labels, block, shape)
    region = np.array(out[block.region])
    new_ids: list[int] = []
    for label, box, touches in owned:
        mask = np.asarray(labels[box]) == label
        window = region[box]
        free = mask & (window == 0)
        if free.sum() < min_free_fraction * mask.sum():
            stats.duplicates += 1
            continue
        window[free] = next_id
        new_ids.append(next_id)
        next_id += 1
        stats.cut += int(touches)
    if new_ids:
        out[block.region] = region
    stats.objects += len(new_ids)
    return region, new_ids


def iter_stitch_blocks(
    out: LabelStore,
    segment_region: Callable[[Block], Generator[Any, None, np.ndarray]],
    *,
    block_size: int = 2048,
    halo: int = 256,
    min_free_fraction: float = 0.5,
    on_block: Callable[[Block, np.ndarray, list[int]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Progress | Notice | Any, None, StitchStats]:
    """Segment ``out``'s plane block by block and write stitched instance labels into it.

    Parameters
    ----------
    out : array-like
        ``(Y, X)`` integer labels, all zero, read and written by slices (a numpy array, a
        zarr array on disk, …); use an unsigned type wide enough for every object (uint32).
    segment_region : callable
        ``segment_region(block)`` is a generator: it may yield events (passed on) and
        returns the instance labels of ``block.region`` (any ids; 0 is background).
    block_size, halo : int
        Block edge and the margin segmented around it, in pixels; objects larger than
        ``halo`` may be cut at block borders.
    min_free_fraction : float
        An object whose pixels are already taken beyond this fraction is a duplicate.
    on_block : callable, optional
        ``on_block(block, region_labels, new_ids)`` after each block, e.g. to measure the
        new objects while the block's pixels are at hand.
    should_stop : callable, optional
        Polled between blocks; True raises :class:`CancelledError`.

    Returns
    -------
    StitchStats
        Objects written (ids ``1..objects``), duplicates dropped and objects possibly cut.
    """
    import time

    shape = tuple(int(s) for s in out.shape[-2:])
    blocks = plan_blocks(shape, block_size, halo)
    stats = StitchStats(blocks=len(blocks))
    for number, block in enumerate(blocks, start=1):
        if should_stop is not None and should_stop():
            raise CancelledError("segmentation was stopped")
        t0 = time.perf_counter()
        labels = yield from segment_region(block)
        region, new_ids = stitch_block(
            out, block, labels, stats.objects + 1, stats, min_free_fraction=min_free_fraction
        )
        if on_block is not None:
            on_block(block, region, new_ids)
        stats.seconds_per_block.append(time.perf_counter() - t0)
        yield Progress("blocks", number, len(blocks), f"{stats.objects} objects")
    if stats.cut:
        yield Notice(
            f"{stats.cut} objects reached the edge of the {halo} px margin around their block "
            "and may be cut; raise the halo above the largest object's size",
            level="warning",
        )
    return stats
