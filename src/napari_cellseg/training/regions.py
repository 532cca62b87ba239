"""Checked regions: the part of a training image whose labels a user corrected.

A user often corrects part of an image, not all of it. A training folder may then hold,
beside ``images/<name>.tif`` and ``masks/<name>.tif``, a **region mask**
``regions/<name>.tif``: a uint8 image of the same height and width, 1 where the labels were
checked and 0 elsewhere (any non-zero value counts as checked). Training ignores everything
outside it: the U-Net loss weighs those pixels 0, Mask R-CNN sees them blanked, crops are
drawn around the region, and validation scores only inside it. An image without a region
mask counts whole. The Correct dock writes region masks (:func:`edited_region`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_cellseg.errors import CellsegError, ImageReadError

__all__ = [
    "REGIONS_DIR",
    "Box",
    "clip_to_region",
    "edited_region",
    "object_boxes",
    "read_region",
    "rectangle_region",
]

REGIONS_DIR = "regions"
"""Sub-folder of a training folder holding the optional region masks."""

Box = tuple[tuple[int, int], ...]
"""A box as ``((start, stop), ...)`` per axis, stops exclusive."""


def read_region(path: str | os.PathLike[str], shape: tuple[int, ...]) -> np.ndarray:
    """Read the region mask ``path`` of an image of plane shape ``shape`` as a bool array.

    Raises
    ------
    CellsegError
        One line naming the file when it cannot be read, is not one 2-D plane, has another
        size than its image, or marks nothing.
    """
    from napari_cellseg.io.images import read_labels

    path = Path(path)
    try:
        data = read_labels(path)
    except ImageReadError as exc:
        raise CellsegError(f"{exc}; a region mask is a uint8 image, 1 where checked") from None
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.shape != tuple(shape):
        size = " x ".join(str(s) for s in data.shape)
        raise CellsegError(
            f"{path}: region mask of size {size} differs from its image "
            f"({shape[0]} x {shape[1]}, Y x X); save it at the image's size, or delete it to "
            "count the whole image"
        )
    region = data > 0
    if not region.any():
        raise CellsegError(
            f"{path}: region mask marks nothing (all 0); mark the checked part with 1, or "
            "delete it to count the whole image"
        )
    return region


def clip_to_region(labels: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """``labels`` with every pixel outside ``region`` set to 0 (``None``: unchanged).

    >>> clip_to_region(np.array([[1, 1, 2]]), np.array([[True, False, True]]))
    array([[1, 0, 2]])
    """
    if region is None:
        return labels
    return np.where(region, labels, 0).astype(labels.dtype, copy=False)


def object_boxes(labels: np.ndarray, ids: Iterable[int]) -> list[Box]:
    """The bounding boxes of the objects ``ids`` present in ``labels`` (absent ones skipped).

    >>> labels = np.zeros((4, 5), int)
    >>> labels[1:3, 2:4] = 7
    >>> object_boxes(labels, [7, 9])
    [((1, 3), (2, 4))]
    """
    wanted = sorted({int(i) for i in ids if int(i) > 0})
    if not wanted:
        return []
    hits = np.isin(labels, wanted)
    lookup = np.where(hits, labels, 0).astype(np.intp)
    boxes = []
    for label, found in enumerate(ndi.find_objects(lookup), start=1):
        if found is not None and label in wanted:
            boxes.append(tuple((s.start, s.stop) for s in found))
    return boxes


def edited_region(shape: tuple[int, int], boxes: Sequence[Box], margin: int) -> np.ndarray:
    """The region a user checked: the union of ``boxes``, each grown by ``margin`` pixels.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the image.
    boxes : sequence of Box
        Boxes of the edited objects and of the edited pixels, in image coordinates
        (clipped to the image).
    margin : int
        Pixels added on every side: the surroundings the user saw while correcting.

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``(height, width)``, 1 inside the region, 0 outside.

    Examples
    --------
    >>> edited_region((4, 6), [((1, 2), (1, 2))], margin=1)
    array([[1, 1, 1, 0, 0, 0],
           [1, 1, 1, 0, 0, 0],
           [1, 1, 1, 0, 0, 0],
           [0, 0, 0, 0, 0, 0]], dtype=uint8)
    """
    if margin < 0:
        raise CellsegError(f"the region margin must be 0 or more pixels, got {margin}")
    region = np.zeros(shape, np.uint8)
    for box in boxes:
        (y0, y1), (x0, x1) = box[-2:]
        window = (
            slice(max(0, y0 - margin), max(0, min(shape[0], y1 + margin))),
            slice(max(0, x0 - margin), max(0, min(shape[1], x1 + margin))),
        )
        region[window] = 1
    return region


def rectangle_region(shape: tuple[int, int], corners: Sequence[np.ndarray]) -> np.ndarray:
    """The pixels whose centres lie in rectangles, each given by corner points ``(N, 2)`` (Y, X).

    >>> rectangle_region((3, 4), [np.array([[0.4, 1.0], [1.6, 2.2]])])
    array([[0, 0, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 0, 0]], dtype=uint8)
    """
    boxes = []
    for points in corners:
        pts = np.asarray(points, float)[:, -2:]
        low = np.ceil(pts.min(axis=0)).astype(int)
        high = np.floor(pts.max(axis=0)).astype(int) + 1
        boxes.append(((int(low[0]), int(high[0])), (int(low[1]), int(high[1]))))
    return edited_region(shape, boxes, margin=0)
