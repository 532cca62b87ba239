"""Object outlines as polygons (with holes) and polygons back to label images.

Coordinates are ``(x, y)`` in full-resolution pixels with the origin at the top-left corner
of the first pixel, as QuPath and ImageJ use them: pixel ``(row, col)`` covers
``[col, col + 1) x [row, row + 1)`` and its centre is ``(col + 0.5, row + 0.5)``. Outlines
are traced with marching squares (:func:`skimage.measure.find_contours`) at level 0.5 of each
object's mask, so they run along the pixel edges and cut each outer corner diagonally; every
pixel centre of the object lies inside its polygon and every other centre outside.
Filling the polygons again (a pixel belongs to a polygon when its centre does) gives the same
label image back, pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "Part",
    "fill_even_odd",
    "fill_into",
    "fill_parts",
    "iter_objects",
    "iter_planes",
    "object_parts",
    "ring_area",
    "stack_axes",
]

Part = tuple[np.ndarray, list[np.ndarray]]
"""One connected piece of an object: its outer ring and its holes, each ``(n, 2)`` ``(x, y)``
with the first point repeated last."""


def ring_area(ring: np.ndarray) -> float:
    """Signed area of a closed ``(x, y)`` ring (shoelace: positive = counter-clockwise with
    y up, as GeoJSON wants outer rings; that is clockwise on screen, where y points down).

    Examples
    --------
    >>> ring_area(np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], float))
    1.0
    """
    x, y = ring[:, 0], ring[:, 1]
    return float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) / 2.0


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """The same closed ring without points on a straight line between their neighbours."""
    pts = ring[:-1]
    if len(pts) < 4:
        return ring
    before, after = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    a, b = pts - before, after - pts
    keep = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) != 0
    pts = pts[keep]
    return np.vstack([pts, pts[:1]])


def object_parts(mask: np.ndarray, offset: Sequence[int] = (0, 0)) -> list[Part]:
    """Trace one object's mask into polygons with holes.

    Parameters
    ----------
    mask : numpy.ndarray
        2-D boolean mask of the object (usually its bounding box).
    offset : sequence of int
        ``(row, col)`` of ``mask[0, 0]`` in the full image.

    Returns
    -------
    list of Part
        One ``(outer ring, holes)`` per connected piece (8-connected), largest first.

    Examples
    --------
    >>> ring = np.ones((3, 3), bool); ring[1, 1] = False
    >>> [(len(outer), len(holes)) for outer, holes in object_parts(ring, (10, 20))]
    [(9, 1)]
    >>> object_parts(ring, (10, 20))[0][1][0][:-1].tolist()  # the hole, around pixel (11, 21)
    [[22.0, 11.5], [21.5, 11.0], [21.0, 11.5], [21.5, 12.0]]
    """
    from skimage.measure import find_contours, points_in_poly

    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    contours = find_contours(padded, 0.5, fully_connected="high", positive_orientation="high")
    outers: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    for contour in contours:
        if len(contour) < 4:
            continue
        # (row, col) of the padded crop -> (x, y) of the full image, pixel-corner origin
        ring = np.column_stack([contour[:, 1] + offset[1] - 0.5, contour[:, 0] + offset[0] - 0.5])
        ring = _drop_collinear(ring)
        (outers if ring_area(ring) < 0 else holes).append(ring)
    # marching squares winds the other way: outer rings positive (GeoJSON), holes negative
    outers, holes = [o[::-1] for o in outers], [h[::-1] for h in holes]
    outers.sort(key=lambda o: -abs(ring_area(o)))
    parts: list[Part] = [(outer, []) for outer in outers]
    for hole in holes:
        inside = [
            i
            for i, outer in enumerate(outers)
            if points_in_poly(hole[:1], outer)[0] and abs(ring_area(outer)) > abs(ring_area(hole))
        ]
        if inside:  # the smallest outer ring around it (islands in holes have their own)
            parts[min(inside, key=lambda i: abs(ring_area(outers[i])))][1].append(hole)
    return parts


def _fill_ring(ring: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels whose centres lie inside an ``(x, y)`` ring."""
    from skimage.draw import polygon

    ring = np.asarray(ring, dtype=float)
    return polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape)


def fill_parts(parts: Iterable[Part], shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask of `shape` from polygons with holes (pixel centres inside).

    Examples
    --------
    >>> ring = np.ones((3, 3), bool); ring[1, 1] = False
    >>> bool(np.array_equal(fill_parts(object_parts(ring), (3, 3)), ring))
    True
    """
    mask = np.zeros(shape, bool)
    for outer, holes in parts:
        part = np.zeros(shape, bool)
        part[_fill_ring(outer, shape)] = True
        for hole in holes:
            part[_fill_ring(hole, shape)] = False
        mask |= part
    return mask


def fill_even_odd(rings: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask from rings combined by the even-odd rule (ImageJ composite ROIs).

    Examples
    --------
    >>> ring = np.ones((3, 3), bool); ring[1, 1] = False
    >>> (outer, (hole,)), = object_parts(ring)
    >>> bool(np.array_equal(fill_even_odd([outer, hole], (3, 3)), ring))
    True
    """
    mask = np.zeros(shape, bool)
    for ring in rings:
        inside = np.zeros(shape, bool)
        inside[_fill_ring(ring, shape)] = True
        mask ^= inside
    return mask


def stack_axes(labels: np.ndarray, axes: str | None = None) -> str:
    """The axes of a label image: `axes` checked, else ``YX``, ``ZYX`` or ``TZYX`` by dimension.

    Examples
    --------
    >>> stack_axes(np.zeros((2, 4, 4))), stack_axes(np.zeros((2, 4, 4)), "tyx")
    ('ZYX', 'TYX')
    """
    arr = np.asarray(labels) if not hasattr(labels, "ndim") else labels
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"labels must be 2-D, 3-D or 4-D, not {arr.ndim}-D (shape {arr.shape})")
    axes = (axes or ("YX", "ZYX", "TZYX")[arr.ndim - 2]).upper()
    if len(axes) != arr.ndim or not axes.endswith("YX") or set(axes[:-2]) - set("TZ"):
        raise ValueError(f"axes {axes!r} do not fit labels of shape {arr.shape}")
    return axes


def iter_planes(
    labels: np.ndarray, axes: str
) -> Iterable[tuple[tuple[int, ...], dict[str, int], np.ndarray]]:
    """``(index, {"z": .., "t": ..}, plane)`` for every 2-D plane of a label stack."""
    lead = axes[:-2]
    for index in np.ndindex(*labels.shape[: len(lead)]):
        position = {"z": 0, "t": 0}
        position.update({a.lower(): int(i) for a, i in zip(lead, index, strict=True)})
        yield index, position, np.asarray(labels[index])


def iter_objects(plane: np.ndarray) -> Iterable[tuple[int, list[Part]]]:
    """``(label, parts)`` for every object of a 2-D label plane, in label order.

    Examples
    --------
    >>> plane = np.zeros((4, 6), np.uint16); plane[1:3, 1:3] = 4; plane[1:3, 3:5] = 9
    >>> [(label, len(parts)) for label, parts in iter_objects(plane)]
    [(4, 1), (9, 1)]
    """
    from scipy.ndimage import find_objects

    for index, box in enumerate(find_objects(plane)):
        if box is None:
            continue
        label = index + 1
        yield label, object_parts(plane[box] == label, (box[0].start, box[1].start))


def fill_into(
    out: np.ndarray,
    label: int,
    *,
    parts: list[Part] | None = None,
    even_odd: list[np.ndarray] | None = None,
) -> None:
    """Paint `label` into the 2-D array `out` inside polygons, rasterising only their box.

    Parameters
    ----------
    out : numpy.ndarray
        2-D label plane, changed in place.
    label : int
        The value to paint.
    parts : list of Part, optional
        Polygons with holes (GeoJSON).
    even_odd : list of numpy.ndarray, optional
        Rings combined by the even-odd rule (ImageJ composite ROIs).

    Examples
    --------
    >>> out = np.zeros((3, 4), np.uint16)
    >>> fill_into(out, 5, even_odd=[np.array([[1, 0], [3, 0], [3, 2], [1, 2], [1, 0]], float)])
    >>> out.tolist()
    [[0, 5, 5, 0], [0, 5, 5, 0], [0, 0, 0, 0]]
    """
    parts = parts or []
    rings = even_odd or []
    flat = [r for outer, holes in parts for r in (outer, *holes)] + list(rings)
    if not flat:
        return
    points = np.vstack(flat)
    x0 = max(int(np.floor(points[:, 0].min())), 0)
    y0 = max(int(np.floor(points[:, 1].min())), 0)
    x1 = min(int(np.ceil(points[:, 0].max())) + 1, out.shape[1])
    y1 = min(int(np.ceil(points[:, 1].max())) + 1, out.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    shift = np.array([x0, y0], float)
    shape = (y1 - y0, x1 - x0)
    mask = fill_parts([(o - shift, [h - shift for h in hs]) for o, hs in parts], shape)
    if rings:
        mask |= fill_even_odd([r - shift for r in rings], shape)
    out[y0:y1, x0:x1][mask] = label
