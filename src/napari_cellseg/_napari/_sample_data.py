"""Sample data for napari's File > Open Sample menu: an image and its ground-truth labels.

Each function named after a sample key (see :mod:`napari_cellseg.io.samples`) returns two
``LayerDataTuple``s. The module does not import napari; napari only calls these functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]


def display_array(data: np.ndarray, axes: str) -> tuple[np.ndarray, bool]:
    """Return ``(array, rgb)`` ready for an Image layer.

    A trailing sample axis (``S`` or ``C``) loses a constant alpha channel, and grey images
    stored as RGB(A) with R = G = B become single-channel. ``rgb`` is true only for real
    3-channel colour images (4-channel images with a varying alpha stay RGBA).

    >>> grey = np.zeros((2, 3, 4), dtype=np.uint8); grey[..., 3] = 255
    >>> arr, rgb = display_array(grey, "YXS"); arr.shape, rgb
    ((2, 3), False)
    """
    if not axes or axes[-1] not in "SC" or data.ndim != len(axes):
        return data, False
    n = data.shape[-1]
    if n in (2, 4) and np.all(data[..., -1] == data[..., -1].flat[0]):
        data = data[..., :-1]  # constant alpha carries nothing
        n -= 1
    if n == 1 or all(np.array_equal(data[..., 0], data[..., i]) for i in range(1, n)):
        return np.ascontiguousarray(data[..., 0]), False
    return data, n in (3, 4)


def contrast_limits(data: np.ndarray, low: float = 0.1, high: float = 99.9) -> list[float]:
    """Percentile contrast limits ``[lo, hi]`` with ``hi > lo``.

    >>> [round(v, 6) for v in contrast_limits(np.arange(1001))]
    [1.0, 999.0]
    """
    lo, hi = (float(v) for v in np.percentile(data, [low, high]))
    return [lo, hi if hi > lo else lo + 1.0]


def load_sample(key: str) -> list[LayerDataTuple]:
    """Read sample ``key`` and return ``[image tuple, ground-truth labels tuple]``."""
    from napari_cellseg.io.images import read_image, read_labels
    from napari_cellseg.io.samples import get_sample

    sample = get_sample(key)
    image = read_image(sample.image_path)
    array, rgb = display_array(np.asarray(image.data), image.axes)
    labels = np.asarray(read_labels(sample.mask_path))

    image_kwargs: dict[str, Any] = {"name": sample.title, "rgb": rgb}
    if not rgb:  # dim fluorescence would look black with the full uint8 range
        image_kwargs["contrast_limits"] = contrast_limits(array)
    labels_kwargs: dict[str, Any] = {"name": f"{sample.title} · ground truth", "opacity": 0.5}
    if image.pixel_size_um is not None and array.ndim - int(rgb) == 2:
        scale = tuple(float(s) for s in image.pixel_size_um)
        image_kwargs["scale"] = labels_kwargs["scale"] = scale
    return [(array, image_kwargs, "image"), (labels, labels_kwargs, "labels")]


def dsb_fluorescence() -> list[LayerDataTuple]:
    """DSB 2018 nuclei, fluorescence: image and ground-truth labels."""
    return load_sample("dsb_fluorescence")


def dsb_brightfield() -> list[LayerDataTuple]:
    """DSB 2018 nuclei, brightfield: image and ground-truth labels."""
    return load_sample("dsb_brightfield")


def dsb_he() -> list[LayerDataTuple]:
    """DSB 2018 nuclei, H&E histology: image and ground-truth labels."""
    return load_sample("dsb_he")
