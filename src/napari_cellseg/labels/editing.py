"""Editing instance label images: delete, merge, split, fill holes, remove small objects.

Every function is pure: it returns a NEW label array (the input is never modified) and works
on the bounding box of the objects concerned, so an edit of one nucleus in a large image only
touches a small region. A GUI applies an edit through its own undoable API by taking the
pixels that changed with :func:`label_changes` (restricted to :func:`objects_bbox` when the
edit is local) and writing only those.

The lookups of :mod:`~napari_cellseg.labels.lookup` are re-exported here.
Labels are 2-D or n-D integer arrays, ``0`` = background. Points are tuples of data
coordinates, one per axis (``(y, x)`` for a 2-D image); floats are rounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from numpy.typing import DTypeLike
from scipy import ndimage as ndi
from skimage.filters import sobel
from skimage.segmentation import relabel_sequential as _sk_relabel
from skimage.segmentation import watershed

from napari_cellseg.errors import CellsegError
from napari_cellseg.labels.lookup import (
    Region,
    changed_ids,
    clean_ids,
    label_changes,
    locate_objects,
    next_free_label,
    object_at,
    object_bbox_centre,
    objects_bbox,
)

__all__ = [
    "changed_ids",
    "delete_objects",
    "fill_holes",
    "label_changes",
    "merge_objects",
    "next_free_label",
    "object_at",
    "object_bbox_centre",
    "objects_bbox",
    "relabel_sequential",
    "remove_small",
    "split_object",
]


def delete_objects(labels: np.ndarray, ids: Iterable[int]) -> np.ndarray:
    """Set the objects `ids` to background.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    ids : iterable of int
        Objects to delete.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    CellsegError
        If no id is given or an id is not in `labels`.

    Examples
    --------
    >>> delete_objects(np.array([[1, 2], [2, 3]]), [2]).tolist()
    [[1, 0], [0, 3]]
    """
    clean = clean_ids(ids)
    if not clean:
        raise CellsegError("no object to delete: pick an object (background is 0)")
    region, mask = locate_objects(labels, clean)
    out = labels.copy()
    out[region][mask] = 0
    return out


def merge_objects(labels: np.ndarray, ids: Iterable[int]) -> tuple[np.ndarray, int]:
    """Merge the objects `ids` into one, keeping the smallest id.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    ids : iterable of int
        At least two objects.

    Returns
    -------
    labels : numpy.ndarray
    kept_id : int

    Raises
    ------
    CellsegError
        If fewer than two distinct ids are given or one is not in `labels`.

    Examples
    --------
    >>> merged, kept = merge_objects(np.array([[3, 7], [0, 9]]), [7, 3])
    >>> merged.tolist(), kept
    ([[3, 3], [0, 9]], 3)
    """
    clean = clean_ids(ids)
    if len(clean) < 2:
        raise CellsegError("merging needs at least two different object ids, e.g. '3, 7'")
    region, mask = locate_objects(labels, clean)
    kept = min(clean)
    out = labels.copy()
    out[region][mask] = kept
    return out, kept


def _elevation(image: np.ndarray, labels_shape: tuple[int, ...], box: Region) -> np.ndarray:
    """Intensity gradient of `image` (grey or channels-last) inside `box`."""
    img = np.asarray(image)
    if img.ndim == len(labels_shape) + 1:
        img = img[..., :3] if img.shape[-1] >= 3 else img
        img = img[box].astype(np.float32).mean(axis=-1)
    elif img.shape == labels_shape:
        img = img[box].astype(np.float32)
    else:
        raise CellsegError(
            f"image shape {image.shape} does not match the labels {labels_shape}; "
            "pick the image the labels belong to"
        )
    span = float(img.max() - img.min())
    img = (img - img.min()) / span if span > 0 else np.zeros_like(img)
    return sobel(img)


def split_object(
    labels: np.ndarray,
    object_id: int,
    seeds: Sequence[Sequence[float]],
    image: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Split one object into one part per seed by marker-controlled watershed.

    The watershed runs inside the object's bounding box only: a compact watershed on the
    intensity gradient (Sobel) of `image` when given, so the cut follows an edge between
    touching nuclei where there is one, else on the object's distance transform. Other
    objects in the box are never changed.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    object_id : int
        The object to split.
    seeds : sequence of points
        At least two distinct points (data coordinates), all inside the object.
    image : numpy.ndarray, optional
        The intensity image (same shape as `labels`, or with a trailing channel axis).

    Returns
    -------
    labels : numpy.ndarray
        The part of the first seed keeps `object_id`; the others get new ids.
    new_ids : list of int
        The ids given to the parts of the second, third, ... seed.

    Raises
    ------
    CellsegError
        If the object is missing, fewer than two distinct seeds are given, a seed lies
        outside the object, or `image` does not match `labels`.
    """
    object_id = int(object_id)
    if object_id <= 0:
        raise CellsegError("no object to split: the first seed must lie on an object")
    region, _ = locate_objects(labels, [object_id])
    box = tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, n))
        for s, n in zip(region, labels.shape, strict=True)
    )
    points: list[tuple[int, ...]] = []
    for seed in seeds:
        if len(seed) != labels.ndim:
            raise CellsegError(f"a seed needs {labels.ndim} coordinates, got {len(seed)}")
        point = tuple(round(float(c)) for c in seed)
        if object_at(labels, point) != object_id:
            shown = ", ".join(f"{float(c):.0f}" for c in seed)
            raise CellsegError(
                f"seed ({shown}) is not inside object {object_id}; put every seed on the "
                "object to split"
            )
        if point not in points:
            points.append(point)
    if len(points) < 2:
        raise CellsegError("splitting needs at least two seeds at different places")
    obj = labels[box] == object_id
    markers = np.zeros(obj.shape, np.int32)
    for k, point in enumerate(points, start=1):
        markers[tuple(p - s.start for p, s in zip(point, box, strict=True))] = k
    if image is None:
        parts = watershed(-ndi.distance_transform_edt(obj), markers, mask=obj)
    else:
        gradient = _elevation(image, labels.shape, box)
        gradient /= max(float(gradient[obj].max()), 1e-12)
        # Compact watershed: crossing the whole object costs as much as the strongest edge,
        # so a part never collapses onto its seed where the object has no inner edge.
        extent = max(s.stop - s.start for s in region)
        parts = watershed(gradient, markers, mask=obj, compactness=1.0 / extent)
    first = next_free_label(labels)
    new_ids = list(range(first, first + len(points) - 1))
    lut = np.array([object_id, object_id, *new_ids], dtype=np.int64)
    out = labels.copy()
    if out.dtype.kind in "iu" and new_ids[-1] > np.iinfo(out.dtype).max:
        out = out.astype(np.uint32 if new_ids[-1] <= np.iinfo(np.uint32).max else np.uint64)
    out[box][obj] = lut[parts[obj]]  # unreached pixels (0) keep object_id
    return out, new_ids


def fill_holes(
    labels: np.ndarray, ids: Iterable[int] | None = None, *, in_place: bool = False
) -> np.ndarray:
    """Fill the holes of objects with their own id.

    Only background pixels are filled: an object enclosed by another is kept. Each object is
    filled within its bounding box, so the cost follows the objects' boxes, not objects x
    image.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    ids : iterable of int, optional
        The objects to fill; all when None.
    in_place : bool
        Fill ``labels`` itself and return it, object after object (an object sees the holes
        earlier ones filled); by default a new array is returned and every object's holes
        are found in the input.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> ring = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]])
    >>> fill_holes(ring).tolist()
    [[1, 1, 1], [1, 1, 1], [1, 1, 1]]
    >>> fill_holes(ring, in_place=True) is ring
    True
    """
    out = labels if in_place else labels.copy()
    if ids is None:
        slices = ndi.find_objects(labels)
        targets = [(i + 1, s) for i, s in enumerate(slices) if s is not None]
    else:
        clean = clean_ids(ids)
        if not clean:
            return out
        locate_objects(labels, clean)
        slices = ndi.find_objects(labels, max_label=max(clean))
        targets = [(i, slices[i - 1]) for i in clean]
    for object_id, region in targets:
        crop = labels[region]
        obj = crop == object_id
        holes = ndi.binary_fill_holes(obj) & ~obj & (crop == 0)
        out[region][holes] = object_id
    return out


def _object_sizes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids present (background included) and their pixel counts."""
    flat = labels.ravel()
    if flat.size and flat.dtype.kind in "iu" and 0 <= int(flat.max()) <= 4 * flat.size:
        counts = np.bincount(flat)
        ids = np.flatnonzero(counts)
        return ids, counts[ids]
    return np.unique(flat, return_counts=True)


def remove_small(
    labels: np.ndarray, min_size: int, *, in_place: bool = False
) -> tuple[np.ndarray, list[int]]:
    """Delete objects with fewer than `min_size` pixels.

    Counts each label's pixels (whether connected or not), unlike
    ``skimage.morphology.remove_small_objects`` whose size argument changed meaning in
    scikit-image 0.26.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    min_size : int
        Smallest size kept, in pixels.
    in_place : bool
        Delete from ``labels`` itself and return it; by default a new array is returned.

    Returns
    -------
    labels : numpy.ndarray
    removed_ids : list of int
        The deleted ids, sorted.

    Examples
    --------
    >>> out, removed = remove_small(np.array([[1, 1, 0], [0, 0, 2]]), 2)
    >>> out.tolist(), removed
    ([[1, 1, 0], [0, 0, 0]], [2])
    """
    if min_size < 0:
        raise CellsegError(f"the minimum size must be 0 or more pixels, got {min_size}")
    out = labels if in_place else labels.copy()
    if min_size <= 1 or labels.size == 0:  # no object has fewer than 1 pixel
        return out, []
    ids, counts = _object_sizes(labels)
    removed = [int(i) for i, c in zip(ids, counts, strict=True) if i and c < min_size]
    if removed:
        out[np.isin(out, removed)] = 0
    return out, removed


def relabel_sequential(
    labels: np.ndarray, *, dtype_for: Callable[[int], DTypeLike] | None = None
) -> np.ndarray:
    """Renumber objects 1..N keeping their order and (by default) the dtype.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    dtype_for : callable, optional
        Given N, the result's dtype (e.g. :func:`napari_cellseg.io.files.label_dtype`, the
        smallest of uint16/uint32); by default the input's dtype is kept.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> relabel_sequential(np.array([[0, 5], [9, 5]], np.uint16)).tolist()
    [[0, 1], [2, 1]]
    >>> relabel_sequential(np.array([[0, 7, 3]]), dtype_for=lambda n: np.uint8).dtype
    dtype('uint8')
    """
    relabelled, _, _ = _sk_relabel(labels)
    if dtype_for is None:
        return relabelled.astype(labels.dtype, copy=False)
    n = int(relabelled.max()) if relabelled.size else 0
    return relabelled.astype(dtype_for(n), copy=False)
