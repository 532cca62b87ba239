"""Exports of label images that QuPath and Fiji read: GeoJSON and ImageJ ROI sets.

One entry point, :func:`export_labels`, used by ``cellseg export``, ``predict --export``,
``batch --export``, the napari writers and the dock's Export button. The formats:

- ``geojson``: QuPath detections with measurements (:mod:`.geojson`), ``<name>.geojson``;
- ``roi``: a Fiji/ImageJ ROI set (:mod:`.imagej_rois`), ``<name>_rois.zip``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.errors import CellsegError, ImageWriteError

__all__ = [
    "EXPORT_FORMATS",
    "check_export_labels",
    "export_labels",
    "export_path",
    "image_for_labels",
    "parse_export_formats",
]

EXPORT_FORMATS: dict[str, str] = {"geojson": "QuPath GeoJSON", "roi": "Fiji/ImageJ ROI set"}
"""Export format names and what they are."""

_LABELS_TAILS = ("_labels.tif", "_labels.tiff")


def parse_export_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"geojson,roi"`` -> ``("geojson", "roi")``; a clear error for unknown names.

    Examples
    --------
    >>> parse_export_formats("roi, GeoJSON"), parse_export_formats(None)
    (('roi', 'geojson'), ())
    """
    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(item.strip().lower() for item in items if item.strip()))
    unknown = [name for name in names if name not in EXPORT_FORMATS]
    if unknown:
        raise CellsegError(
            f"unknown export format {unknown[0]!r}; choose from {', '.join(EXPORT_FORMATS)} "
            "(several separated by commas, e.g. --export geojson,roi)"
        )
    return names


def export_path(labels_path: str | os.PathLike[str], fmt: str) -> Path:
    """Where an export goes beside a label file.

    Examples
    --------
    >>> export_path("out/a_labels.tif", "geojson").as_posix()
    'out/a_labels.geojson'
    >>> export_path("out/a_labels.tif", "roi").as_posix(), export_path("b.png", "roi").name
    ('out/a_rois.zip', 'b_rois.zip')
    """
    p = Path(labels_path)
    if fmt == "geojson":
        return p.with_suffix(".geojson")
    name = p.name
    for tail in _LABELS_TAILS:
        if name.lower().endswith(tail):
            return p.with_name(name[: -len(tail)] + "_rois.zip")
    return p.with_name(p.stem + "_rois.zip")


def check_export_labels(labels: Any, what: str | os.PathLike[str]) -> np.ndarray:
    """`labels` as an integer array of 2 to 4 dimensions, or a CellsegError naming `what`.

    Examples
    --------
    >>> check_export_labels(np.zeros((2, 2), np.float32), "cells")
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: cells: labels must be integers, not float32; ...
    """
    arr = np.asarray(labels)
    if arr.dtype.kind not in "biu":
        raise CellsegError(
            f"{what}: labels must be integers, not {arr.dtype}; export a Labels layer or a "
            "label image, not an image"
        )
    if arr.ndim not in (2, 3, 4) or 0 in arr.shape:
        raise CellsegError(
            f"{what}: labels must be a 2-D image or a Z/T stack of them, not shape {arr.shape}"
        )
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise CellsegError(f"{what}: labels have negative values; labels must be 0 or more")
    return arr


def image_for_labels(
    data: np.ndarray, axes: str, labels_shape: tuple[int, ...], what: str | os.PathLike[str]
) -> np.ndarray:
    """An image in the labels' layout (their shape, plus channels last) for intensities.

    Examples
    --------
    >>> image_for_labels(np.zeros((3, 4, 5)), "CYX", (4, 5), "im.tif").shape
    (4, 5, 3)
    """
    arr = np.asarray(data)
    axes = axes.upper()
    if "C" in axes and "S" not in axes:
        arr = np.moveaxis(arr, axes.index("C"), -1)
        axes = axes.replace("C", "") + "C"
    n = len(labels_shape)
    if arr.shape[:n] != tuple(labels_shape) or arr.ndim > n + 1:
        raise CellsegError(
            f"{what}: image of shape {data.shape} ({axes}) does not fit labels of shape "
            f"{tuple(labels_shape)}; give the image the labels were made from"
        )
    return arr


def export_labels(
    path: str | os.PathLike[str],
    labels: Any,
    fmt: str,
    *,
    image: np.ndarray | None = None,
    axes: str | None = None,
    pixel_size_um: tuple[float, float] | None = None,
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Export a label image as ``geojson`` or ``roi`` (see the module), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder must exist).
    labels : array-like
        Integer instance labels, 2-D or a stack with leading Z/T axes.
    fmt : str
        ``"geojson"`` or ``"roi"``.
    image : numpy.ndarray, optional
        Shaped like `labels` plus optional trailing channels (:func:`image_for_labels`):
        mean intensities in the GeoJSON.
    axes : str, optional
        Axes of `labels` (``YX``, ``ZYX``, ``TYX``, ``TZYX``).
    pixel_size_um : tuple of float, optional
        Pixel size (y, x) in micrometres (GeoJSON measurements in µm).
    source : str or os.PathLike, optional
        What the labels are, for error messages (default: `path`).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    CellsegError
        If the labels are not integers, the format is unknown or the file cannot be written
        (nothing partial is left behind).
    """
    from napari_cellseg.io.geojson import write_geojson
    from napari_cellseg.io.imagej_rois import write_roi_zip

    formats = parse_export_formats(fmt)
    if len(formats) != 1:
        raise CellsegError(f"give one export format ({', '.join(EXPORT_FORMATS)}), not {fmt!r}")
    fmt = formats[0]
    arr = check_export_labels(labels, source or path)
    try:
        if fmt == "geojson":
            return write_geojson(path, arr, image=image, axes=axes, pixel_size_um=pixel_size_um)
        return write_roi_zip(path, arr, axes=axes)
    except ValueError as exc:  # axes that do not fit the labels
        raise ImageWriteError(path, str(exc)) from None
