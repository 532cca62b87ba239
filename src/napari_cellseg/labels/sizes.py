"""Object sizes of label images: equivalent diameters and nearest-neighbour resampling indices.

One implementation used by training (the size of each training image's objects), inference
(the ``auto`` diameter estimate) and the GUI's "measure from labels".
"""

from __future__ import annotations

import math

import numpy as np


def equivalent_diameters(
    labels: np.ndarray, *, exclude_border: bool = False, min_area: int = 0
) -> np.ndarray:
    """The equivalent diameter (px) of each object: that of the disc of the same area.

    ``sqrt(4 * area / pi)``, as skimage ``regionprops``' ``equivalent_diameter_area``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer ``(H, W)`` instance labels, 0 = background.
    exclude_border : bool
        Leave out objects touching the image border (cut objects look smaller).
    min_area : int
        Leave out objects below this many pixels (fragments).

    Returns
    -------
    numpy.ndarray
        One diameter per object kept, in label order.

    Examples
    --------
    >>> labels = np.zeros((40, 40), np.int32)
    >>> labels[:10, :10], labels[20:30, 20:30], labels[35, 35] = 1, 2, 3
    >>> equivalent_diameters(labels).round(2).tolist()
    [11.28, 11.28, 1.13]
    >>> equivalent_diameters(labels, exclude_border=True, min_area=4).round(2).tolist()
    [11.28]
    """
    values = np.asarray(labels)
    if values.ndim != 2:
        raise ValueError(f"expected (H, W) labels, got shape {values.shape}")
    ids, areas = np.unique(values[values != 0], return_counts=True)
    keep = areas >= min_area
    if exclude_border and ids.size:
        edge = np.unique(np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]]))
        keep &= ~np.isin(ids, edge)
    return np.sqrt(4.0 * areas[keep] / math.pi)


def median_diameter(
    labels: np.ndarray, *, exclude_border: bool = False, min_area: int = 0
) -> float | None:
    """The median equivalent diameter (px) of the objects; ``None`` when there is none.

    With ``exclude_border`` or ``min_area``, the objects left out count again when nothing
    else is left (an image of one cut object still has a size).

    >>> labels = np.zeros((40, 40), np.int32)
    >>> labels[:10, :10], labels[20:30, 20:30] = 1, 2
    >>> round(median_diameter(labels), 2)
    11.28
    >>> median_diameter(np.zeros((5, 5), np.int32)) is None
    True
    """
    kept = equivalent_diameters(labels, exclude_border=exclude_border, min_area=min_area)
    if kept.size == 0 and (exclude_border or min_area):
        kept = equivalent_diameters(labels)
    return float(np.median(kept)) if kept.size else None


def nearest_index(n_source: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` samples resampling ``n_source`` by nearest neighbour.

    Pixel centres are aligned as in ``torch.nn.functional.interpolate(align_corners=False)``.

    >>> nearest_index(4, 8).tolist()
    [0, 0, 1, 1, 2, 2, 3, 3]
    >>> nearest_index(8, 4).tolist()
    [1, 3, 5, 7]
    """
    index = np.floor((np.arange(n_out) + 0.5) * (n_source / n_out)).astype(np.int64)
    return np.clip(index, 0, n_source - 1)
