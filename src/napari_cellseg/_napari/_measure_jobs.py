"""What the Measure tab measures: one Labels layer's objects, over the image it came from.

Kept free of Qt: :func:`measure_layer_arrays` takes the arrays (and the axis letters the
Segment tab uses) and returns the column table of
:func:`napari_cellseg.batch.measure.measure_labels`, so the same columns come out of the
dock, ``cellseg batch --measure`` and the Batch dialog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_cellseg.batch.measure import measure_labels
from napari_cellseg.errors import CellsegError

LEAD_AXES = "TZ"


def _yx_shape(shape: Sequence[int], axes: str) -> tuple[int, int]:
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])


def measure_layer_arrays(
    labels: np.ndarray,
    image: Any | None,
    axes: str | None,
    *,
    plane: Sequence[int] | None = None,
    pixel_size_um: float | None = None,
    labels_name: str = "labels",
    image_name: str = "image",
) -> dict[str, np.ndarray]:
    """Per-object measurements of a labels array, with intensities from ``image``.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels: ``(Y, X)``, or the image's T/Z axes then ``(Y, X)``.
    image : array-like or None
        The image the labels belong to, with axes ``axes``; None measures shapes only.
    axes : str or None
        Axis letters of ``image`` (``TZ`` lead, then ``YX`` and maybe ``S``/``C``).
    plane : sequence of int, optional
        For 2-D labels over a stack: the index over the image's T/Z axes they belong to.
        It becomes the ``t``/``z`` columns of every row.
    pixel_size_um : float, optional
        Square pixel size in micrometres; adds the ``*_um`` / ``*_um2`` columns.
    labels_name, image_name : str
        Layer names for the error messages.

    Returns
    -------
    dict of str to numpy.ndarray
        One row per object (per plane): ``label``, ``area``, centroid, bounding box,
        ``perimeter``, ``eccentricity``, ``solidity``, and with an image the mean, min and
        max intensity of each channel.

    Raises
    ------
    CellsegError
        When the labels do not fit the image (size or number of planes), with what to do.
    """
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.ndim > 4:
        raise CellsegError(
            f"{labels_name!r} has {labels.ndim} dimensions; the Measure tab takes 2-D labels "
            "or stacks of them (at most T, Z, Y, X)"
        )
    if labels.dtype.kind not in "iub":
        raise CellsegError(
            f"{labels_name!r} holds {labels.dtype} values, not object ids; choose a Labels "
            "layer of integers"
        )
    size = (pixel_size_um, pixel_size_um) if pixel_size_um else None
    if image is None or axes is None:
        lead = LEAD_AXES[len(LEAD_AXES) - (labels.ndim - 2) :]
        shapes_only = np.zeros(labels.shape, np.uint8)
        table = measure_labels(labels, shapes_only, lead + "YX", size)
        return {k: v for k, v in table.items() if "_intensity_" not in k}

    n_lead = sum(a in LEAD_AXES for a in axes)
    image_y, image_x = _yx_shape(image.shape, axes)
    if (image_y, image_x) != labels.shape[-2:]:
        raise CellsegError(
            f"{labels_name!r} is {labels.shape[-2]}×{labels.shape[-1]} pixels but "
            f"{image_name!r} is {image_y}×{image_x}: choose the image the labels were made "
            "from, or none to measure shapes only"
        )
    if labels.ndim == n_lead + 2:
        if tuple(labels.shape[:-2]) != tuple(image.shape[:n_lead]):
            raise CellsegError(
                f"{labels_name!r} has planes {tuple(labels.shape[:-2])} but {image_name!r} "
                f"has {tuple(image.shape[:n_lead])}: choose the image the labels were made from"
            )
        return measure_labels(labels, np.asarray(image), axes, size)
    if labels.ndim == 2 and n_lead and plane is not None and len(plane) == n_lead:
        index = tuple(int(i) for i in plane)
        table = measure_labels(labels, np.asarray(image[index]), axes[n_lead:], size)
        n = len(table["label"])
        stack = {
            a.lower(): np.full(n, i, np.int64) for a, i in zip(axes[:n_lead], index, strict=True)
        }
        return {**stack, **table}
    raise CellsegError(
        f"{labels_name!r} has {labels.ndim} dimensions but {image_name!r} has "
        f"{n_lead + 2} (axes {axes}): choose the image the labels were made from"
    )


def summary(table: dict[str, np.ndarray]) -> str:
    """One line for the status: object count and median area (and µm² when known)."""
    n = len(table.get("label", ()))
    if n == 0:
        return "no objects"
    text = f"{n} object{'s' if n != 1 else ''}, median area {np.median(table['area']):.0f} px"
    if "area_um2" in table:
        text += f" ({np.median(table['area_um2']):.1f} µm²)"
    return text


#: Columns the Measure tab summarises (intensity means per channel follow), and the statistics.
SUMMARY_COLUMNS = ("area", "area_um2", "perimeter", "perimeter_um", "eccentricity", "solidity")
SUMMARY_STATS = ("median", "mean", "min", "max")


def summary_rows(table: dict[str, np.ndarray]) -> tuple[list[str], list[list[str]]]:
    """Median, mean, min and max of the main columns, formatted for the dock's table.

    Returns
    -------
    names : list of str
        The summarised columns: those of :data:`SUMMARY_COLUMNS` present, then
        ``mean_intensity_c<k>``.
    rows : list of list of str
        One row per name, one cell per statistic of :data:`SUMMARY_STATS` (3 significant
        digits, to fit the dock); empty when there are no objects.
    """
    names = [c for c in SUMMARY_COLUMNS if c in table]
    names += [c for c in table if c.startswith("mean_intensity_c")]
    if len(table.get("label", ())) == 0:
        return names, [["" for _ in SUMMARY_STATS] for _ in names]
    functions = (np.median, np.mean, np.min, np.max)
    rows = [
        [format(float(f(np.asarray(table[name], float))), ".3g") for f in functions]
        for name in names
    ]
    return names, rows
