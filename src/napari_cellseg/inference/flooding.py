"""A marker-controlled watershed that runs only where it has a choice to make.

``skimage.segmentation.watershed(surface, markers, mask=foreground)`` floods each
4-connected component of the mask on its own: a component that holds the pixels of a single
marker ends up wholly that marker's, one without a marker stays 0. Only components shared
by two or more markers need the flooding itself. :func:`flood` labels the components once,
gives the single-marker ones their marker through a look-up table and runs the watershed on
the bounding box of each shared component alone, so that on nuclei images (most nuclei
alone in their component) the float64 copies and priority queue of a whole-plane watershed
are mostly avoided. The labels are the whole-plane watershed's, pixel for pixel, on every
real network output measured (the sample images and DSB mosaics;
``tests/inference/test_postprocess_speed.py``, ``bench/postprocess_speed.py``). They can
differ only where the flooding must break an exact tie between two markers (equal values,
or a pixel next to two markers): skimage leaves that order to its heap, which holds other
components' pixels too in a whole-plane run. ``tests/inference/test_flooding.py`` checks
that without ties the labels are identical and that with many ties only contested patches
differ.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

__all__ = ["flood"]

_SHARED_AREA_FOR_ONE_PASS = 0.5
"""When the shared components' boxes cover more than this fraction of the plane, one
whole-plane watershed is cheaper than one per component."""


def flood(surface: np.ndarray, markers: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """``watershed(surface, markers, mask=foreground)`` (4-connected flooding), faster.

    Parameters
    ----------
    surface : numpy.ndarray
        ``(Y, X)`` values to flood, lowest first.
    markers : numpy.ndarray
        ``(Y, X)`` integer markers (0: none); all inside ``foreground``.
    foreground : numpy.ndarray
        ``(Y, X)`` bool mask of the pixels to label.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` labels, ``markers``' dtype; 0 outside ``foreground`` and in components
        without a marker.

    Examples
    --------
    >>> fg = np.zeros((3, 7), bool); fg[:, :3] = fg[:, 4:] = True
    >>> markers = np.zeros((3, 7), np.int32); markers[1, 0] = 1
    >>> markers[1, 4], markers[1, 6] = 2, 3
    >>> surface = np.tile(np.array([0, 0, 0, 0, 0, 1, 0], np.float32), (3, 1))
    >>> flood(surface, markers, fg)
    array([[1, 1, 1, 0, 2, 2, 3],
           [1, 1, 1, 0, 2, 2, 3],
           [1, 1, 1, 0, 2, 2, 3]], dtype=int32)
    """
    markers = np.asarray(markers)
    foreground = np.asarray(foreground, bool)
    components, n = ndi.label(foreground)  # 4-connected: how the watershed floods
    if n == 0:
        return np.zeros(markers.shape, markers.dtype)
    where = markers > 0
    owner, label = components[where], markers[where].astype(np.int64)
    low = np.full(n + 1, np.iinfo(np.int64).max, np.int64)
    high = np.zeros(n + 1, np.int64)
    np.minimum.at(low, owner, label)
    np.maximum.at(high, owner, label)
    single = high > 0
    single &= low == high
    shared = np.flatnonzero((high > 0) & ~single)
    lut = np.where(single, high, 0).astype(markers.dtype)
    lut[0] = 0
    out = lut[components]
    if len(shared) == 0:
        return out
    boxes = ndi.find_objects(components)
    area = sum(
        (boxes[k - 1][0].stop - boxes[k - 1][0].start)
        * (boxes[k - 1][1].stop - boxes[k - 1][1].start)
        for k in shared
    )
    if area > _SHARED_AREA_FOR_ONE_PASS * foreground.size:
        is_shared = np.zeros(n + 1, bool)
        is_shared[shared] = True
        mask = is_shared[components]
        flooded = watershed(surface, np.where(mask, markers, 0), mask=mask)
        out[mask] = flooded[mask]
        return out
    for k in shared:
        box = boxes[k - 1]
        mask = components[box] == k
        flooded = watershed(surface[box], np.where(mask, markers[box], 0), mask=mask)
        out[box][mask] = flooded[mask]
    return out
