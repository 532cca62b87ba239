"""Finding objects in instance label images: ids at points, bounding boxes, changed pixels.

These lookups support :mod:`napari_cellseg.labels.editing` (which re-exports the public ones)
and a GUI applying edits: :func:`label_changes` gives exactly the pixels to write, restricted
to :func:`objects_bbox` when an edit is local, so large images stay fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from napari_cellseg.errors import CellsegError

__all__ = [
    "Region",
    "changed_ids",
    "clean_ids",
    "label_changes",
    "locate_objects",
    "next_free_label",
    "object_at",
    "object_bbox_centre",
    "objects_bbox",
]

Region = tuple[slice, ...]


def _bbox(mask: np.ndarray, pad: int = 0) -> Region | None:
    """Bounding box of the True pixels of `mask` (grown by `pad`, clipped), or None."""
    region = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other) if other else mask)
        if hits.size == 0:
            return None
        start = max(int(hits[0]) - pad, 0)
        stop = min(int(hits[-1]) + 1 + pad, mask.shape[axis])
        region.append(slice(start, stop))
    return tuple(region)


def clean_ids(ids: Iterable[int]) -> list[int]:
    """Distinct positive ids, in the order given (0 = background is dropped).

    Examples
    --------
    >>> clean_ids([3, 0, 3, 7])
    [3, 7]
    """
    out: list[int] = []
    for value in ids:
        i = int(value)
        if i < 0:
            raise CellsegError(f"object ids are positive integers, got {i}")
        if i and i not in out:
            out.append(i)
    return out


def locate_objects(labels: np.ndarray, ids: Sequence[int]) -> tuple[Region, np.ndarray]:
    """Bounding box of the objects `ids` and their mask inside it.

    Raises
    ------
    CellsegError
        Naming every id that is not in `labels`.
    """
    mask = np.isin(labels, ids)
    region = _bbox(mask)
    present = set() if region is None else {int(v) for v in np.unique(labels[region][mask[region]])}
    missing = [i for i in ids if i not in present]
    if missing:
        names = ", ".join(str(i) for i in missing)
        raise CellsegError(
            f"no object with id {names} in the labels; pick ids shown in the labels layer"
        )
    assert region is not None
    return region, mask[region]


def objects_bbox(labels: np.ndarray, ids: Iterable[int], pad: int = 0) -> Region | None:
    """Bounding box (tuple of slices) of the objects `ids`, or None if none is present.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    ids : iterable of int
        Object ids.
    pad : int, optional
        Pixels to grow the box by on each side (clipped to the image).

    Returns
    -------
    tuple of slice or None

    Examples
    --------
    >>> labels = np.zeros((4, 5), np.uint16)
    >>> labels[1:3, 2:4] = 7
    >>> objects_bbox(labels, [7])
    (slice(1, 3, None), slice(2, 4, None))
    """
    clean = clean_ids(ids)
    if not clean:
        return None
    return _bbox(np.isin(labels, clean), pad)


def object_at(labels: np.ndarray, point: Sequence[float]) -> int:
    """The object id at `point`, 0 for background or outside the image.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    point : sequence of float
        Data coordinates, one per axis of `labels` (rounded to the nearest pixel).

    Returns
    -------
    int

    Examples
    --------
    >>> labels = np.array([[0, 3], [0, 3]], np.uint16)
    >>> object_at(labels, (1.2, 0.9)), object_at(labels, (0, 0)), object_at(labels, (5, 5))
    (3, 0, 0)
    """
    if len(point) != labels.ndim:
        raise CellsegError(f"a point needs {labels.ndim} coordinates, got {len(point)}")
    index = tuple(round(float(c)) for c in point)
    if any(i < 0 or i >= n for i, n in zip(index, labels.shape, strict=True)):
        return 0
    return int(labels[index])


def object_bbox_centre(labels: np.ndarray, object_id: int) -> tuple[float, ...]:
    """Centre of the bounding box of one object, in data coordinates.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    object_id : int
        The object.

    Returns
    -------
    tuple of float

    Raises
    ------
    CellsegError
        If there is no such object.

    Examples
    --------
    >>> labels = np.zeros((5, 5), np.uint16)
    >>> labels[1:4, 2:5] = 2
    >>> object_bbox_centre(labels, 2)
    (2.0, 3.0)
    """
    region, _ = locate_objects(labels, clean_ids([object_id]) or [0])
    return tuple((s.start + s.stop - 1) / 2 for s in region)


def next_free_label(labels: np.ndarray) -> int:
    """The id for a new object: one more than the largest id in `labels`.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.

    Returns
    -------
    int

    Examples
    --------
    >>> next_free_label(np.array([[0, 4], [2, 0]])), next_free_label(np.zeros((2, 2), int))
    (5, 1)
    """
    return int(labels.max()) + 1 if labels.size else 1


def changed_ids(before: np.ndarray, after: np.ndarray) -> list[int]:
    """Ids of the objects whose pixels differ between two labelings.

    Parameters
    ----------
    before, after : numpy.ndarray
        Labelings of the same shape.

    Returns
    -------
    list of int
        Old and new ids of the changed pixels, sorted, background excluded.

    Examples
    --------
    >>> before = np.array([[1, 1, 0], [2, 2, 0]])
    >>> after = np.array([[1, 1, 0], [2, 5, 0]])
    >>> changed_ids(before, after)
    [2, 5]
    """
    if before.shape != after.shape:
        raise CellsegError(f"label shapes differ: {before.shape} and {after.shape}")
    diff = before != after
    ids = np.union1d(before[diff], after[diff])
    return [int(i) for i in ids if i]


def label_changes(
    before: np.ndarray, after: np.ndarray, region: Region | None = None
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The pixels that differ: their indices (full-array) and new values.

    Parameters
    ----------
    before, after : numpy.ndarray
        Labelings of the same shape.
    region : tuple of slice, optional
        Only compare inside this box (the edit is known to be confined to it).

    Returns
    -------
    indices : tuple of numpy.ndarray
        One index array per axis (fancy indexing into the full array).
    values : numpy.ndarray
        ``after`` at those indices.

    Examples
    --------
    >>> before = np.array([[1, 1], [0, 2]])
    >>> after = np.array([[1, 0], [0, 2]])
    >>> idx, values = label_changes(before, after)
    >>> [a.tolist() for a in idx], values.tolist()
    ([[0], [1]], [0])
    """
    if before.shape != after.shape:
        raise CellsegError(f"label shapes differ: {before.shape} and {after.shape}")
    region = region or tuple(slice(0, n) for n in before.shape)
    local = np.nonzero(before[region] != after[region])
    indices = tuple(i + s.start for i, s in zip(local, region, strict=True))
    return indices, after[indices]
