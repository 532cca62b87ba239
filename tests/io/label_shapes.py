"""Label images for the export tests: touching objects with specks of background."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def cells(shape=(60, 80), seed=0) -> np.ndarray:
    """Touching blobs of random sizes: a watershed of random seeds, background cut out."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    for i in range(1, 16):
        seeds[tuple(rng.integers(0, s) for s in shape)] = i
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[iy, ix].astype(np.uint16)
    labels[rng.random(shape) < 0.02] = 0  # specks of background, some inside objects
    labels[:3] = 0
    return labels


def iou_per_object(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    out = {}
    for label in np.unique(a[a > 0]):
        inter = np.logical_and(a == label, b == label).sum()
        union = np.logical_or(a == label, b == label).sum()
        out[int(label)] = inter / union
    return out
