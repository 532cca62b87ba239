"""The ``spread`` ranking order: doubtful images that look like many others, and unlike each other.

Ranking by doubt alone sends the user to the images the model is least sure of; with a
handful of images to correct for a fine-tune, those can be outliers (a blank tile, an odd
stain) that teach little about the rest. ``spread`` weighs each image's total doubt by how
typical it is of the folder and, pick by pick, by how unlike the images already picked it
is (information density with a diversity term: Settles & Craven, 2008, "An analysis of
active learning strategies for sequence labeling tasks").

An image's look is :func:`appearance`: quantiles of its colour channels and the density and
size of the objects the model found; the features are standardised over the folder and
compared with a Gaussian kernel whose width is the median distance between images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_cellseg.inference.object_size import central_crop

__all__ = ["appearance", "spread_order"]

QUANTILES = (0.05, 0.5, 0.95)
"""Intensity quantiles of each colour channel in :func:`appearance`."""


def appearance(data: np.ndarray, axes: str, labels: np.ndarray | None) -> np.ndarray:
    """A short description of how an image looks: colour quantiles, object density and size.

    Parameters
    ----------
    data : numpy.ndarray
        The image, axes ``axes`` (letters from ``TZCYXS``); the middle plane of a stack or
        movie is used. Grey images count as three equal channels, so that grey and colour
        images compare; intensities are scaled by the dtype's range (floats by their 99.9th
        percentile).
    axes : str
        The axes of ``data``.
    labels : numpy.ndarray or None
        The model's labels for the image (``None``: no object features, zeros).

    Returns
    -------
    numpy.ndarray
        ``3 * len(QUANTILES) + 2`` floats: the quantiles of each of the first three channels,
        log(1 + objects per 10,000 px) and log(1 + median object area).

    >>> grey = np.zeros((40, 40), np.uint8)
    >>> grey[5:10, 5:10] = 255
    >>> labels = (grey > 0).astype(np.uint16)
    >>> appearance(grey, "YX", labels).round(2).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.98, 3.26]
    """
    plane = _middle_plane(np.asarray(data), axes)
    if np.issubdtype(plane.dtype, np.integer):
        scale = float(np.iinfo(plane.dtype).max)
    else:
        scale = float(np.percentile(plane, 99.9)) or 1.0
    values = plane.astype(np.float32) / scale
    channels = values.reshape(-1, values.shape[-1]) if values.ndim == 3 else values.reshape(-1, 1)
    channels = np.repeat(channels, 3, axis=1) if channels.shape[1] == 1 else channels[:, :3]
    if channels.shape[1] == 2:  # two channels: the second repeated, three in all
        channels = np.concatenate([channels, channels[:, 1:]], axis=1)
    look = np.quantile(channels, QUANTILES, axis=0).T.reshape(-1)
    if labels is None or not np.any(labels):
        objects = np.zeros(2)
    else:
        areas = np.bincount(np.asarray(labels).ravel())[1:]
        areas = areas[areas > 0]
        objects = np.array(
            [np.log1p(areas.size * 1e4 / labels.size), np.log1p(float(np.median(areas)))]
        )
    return np.concatenate([look, objects]).astype(np.float64)


def _middle_plane(data: np.ndarray, axes: str) -> np.ndarray:
    """``data`` as ``(Y, X)`` or ``(Y, X, channels)``: the middle of T and Z, whole."""
    plane, kept = central_crop(data, axes, max(data.shape))
    order = [kept.index(a) for a in "YX"] + [i for i, a in enumerate(kept) if a in "CS"]
    return np.transpose(plane, order)


def spread_order(doubts: Sequence[float], features: np.ndarray) -> list[int]:
    """Indices in ``spread`` order: doubt × typicality × unlikeness to those already picked.

    Parameters
    ----------
    doubts : sequence of float
        Each image's total doubt (``RankedImage.total_doubt``).
    features : numpy.ndarray
        ``(n, k)``: each image's :func:`appearance`.

    Returns
    -------
    list of int
        Every index once, the first to correct first. Each pick maximises
        ``doubt * density * (1 - closest)``: ``density`` is the image's mean similarity to
        the others, ``closest`` its largest similarity to an image already picked
        (similarity ``exp(-d² / median d²)`` between standardised features); ties go to the
        earlier index.

    >>> features = np.array([[0.0], [0.1], [0.2], [5.0]])
    >>> spread_order([1.0, 1.0, 0.9, 3.0], features)  # typical first, then not its twins
    [1, 3, 0, 2]
    """
    n = len(doubts)
    if n == 0:
        return []
    x = np.asarray(features, np.float64).reshape(n, -1)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    off = d2[~np.eye(n, dtype=bool)]
    width = float(np.median(off)) if off.size and np.median(off) > 0 else 1.0
    similar = np.exp(-d2 / width)
    density = (similar.sum(axis=1) - 1.0) / max(n - 1, 1) if n > 1 else np.ones(1)
    value = np.asarray(doubts, np.float64) * density
    closest = np.zeros(n)
    left = np.ones(n, bool)
    picked: list[int] = []
    for _ in range(n):
        gain = np.where(left, value * (1.0 - closest), -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        left[best] = False
        closest = np.maximum(closest, similar[best])
    return picked
