"""Per-object measurements of a label image (``skimage.measure.regionprops_table``).

One row per object and plane: ``label``, ``area``, ``centroid_y/x``, ``bbox_y0/x0/y1/x1``,
``perimeter``, ``eccentricity``, ``solidity`` and, for every image channel ``k``,
``mean_intensity_ck``, ``min_intensity_ck``, ``max_intensity_ck`` (raw pixel values, before
any normalisation). Stacks get one index column per stack axis first (``t``, ``z``). When the
image carries a pixel size, physical columns are added: ``area_um2``, ``perimeter_um``,
``centroid_y_um``, ``centroid_x_um`` (the perimeter uses the geometric mean of the Y and X
pixel sizes, exact for square pixels).
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from napari_cellseg.io.atomic import atomic_write, atomic_write_text

__all__ = [
    "MEASUREMENT_COLUMNS",
    "add_physical_columns",
    "measure_labels",
    "merge_measurement_csvs",
    "write_table_csv",
]

_PROPERTIES = (
    "label",
    "area",
    "centroid",
    "bbox",
    "perimeter",
    "eccentricity",
    "solidity",
    "intensity_mean",
    "intensity_min",
    "intensity_max",
)
_RENAME = {
    "centroid-0": "centroid_y",
    "centroid-1": "centroid_x",
    "bbox-0": "bbox_y0",
    "bbox-1": "bbox_x0",
    "bbox-2": "bbox_y1",
    "bbox-3": "bbox_x1",
}
MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "label",
    "area",
    "centroid_y",
    "centroid_x",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "perimeter",
    "eccentricity",
    "solidity",
)
"""Shape columns present in every measurement table (intensity columns follow per channel)."""


def _plane_channels(plane: np.ndarray) -> np.ndarray:
    """A ``(Y, X)`` or ``(Y, X, C)`` plane as ``(Y, X, C)`` numbers regionprops accepts."""
    data = np.asarray(plane)
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    return data[..., None] if data.ndim == 2 else data


def measure_labels(
    labels: np.ndarray,
    image: np.ndarray,
    axes: str,
    pixel_size_um: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Measure every object of every plane.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels with the image's T/Z axes then Y, X (as from ``iter_predict``).
    image : numpy.ndarray
        The image the labels came from (raw values), with axes `axes`.
    axes : str
        Axes of `image` (letters from ``"TZCYXS"``).
    pixel_size_um : sequence of float, optional
        Pixel size (y, x) in micrometres; adds the ``*_um`` / ``*_um2`` columns.

    Returns
    -------
    dict of str to numpy.ndarray
        Columns of equal length, one row per object.

    Examples
    --------
    >>> lab = np.zeros((6, 6), np.uint16); lab[1:3, 1:4] = 1
    >>> t = measure_labels(lab, np.full((6, 6), 7, np.uint8), "YX", (0.5, 0.5))
    >>> t["label"].tolist(), t["area"].tolist(), t["area_um2"].tolist(), t["mean_intensity_c0"]
    ([1], [6.0], [1.5], array([7.]))
    """
    from skimage.measure import regionprops_table

    from napari_cellseg.inference.preprocess import iter_planes

    stack_axes = [a.lower() for a in axes.upper() if a in "TZ"]
    parts: list[dict[str, np.ndarray]] = []
    for index, plane in iter_planes(image, axes):
        plane_labels = np.asarray(labels[index] if index else labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate hulls of line-like objects
            table = regionprops_table(plane_labels, _plane_channels(plane), properties=_PROPERTIES)
        n = len(table["label"])
        columns: dict[str, np.ndarray] = {
            name: np.full(n, position, np.int64)
            for name, position in zip(stack_axes, index, strict=True)
        }
        for key, values in table.items():
            if key.startswith("intensity_"):
                stat, channel = key[len("intensity_") :].split("-")
                columns[f"{stat}_intensity_c{channel}"] = values
            else:
                columns[_RENAME.get(key, key)] = values
        parts.append(columns)
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return add_physical_columns(out, pixel_size_um)


def add_physical_columns(
    table: dict[str, np.ndarray], pixel_size_um: Sequence[float] | None
) -> dict[str, np.ndarray]:
    """Add ``area_um2``, ``perimeter_um``, ``centroid_y_um`` and ``centroid_x_um`` in place.

    Nothing is added when ``pixel_size_um`` (y, x) is None. The perimeter uses the geometric
    mean of the two pixel sizes. Returns ``table``.
    """
    if pixel_size_um is not None and "area" in table:
        sy, sx = (float(v) for v in pixel_size_um)
        table["area_um2"] = table["area"] * sy * sx
        table["perimeter_um"] = table["perimeter"] * math.sqrt(sy * sx)
        table["centroid_y_um"] = table["centroid_y"] * sy
        table["centroid_x_um"] = table["centroid_x"] * sx
    return table


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return format(float(value), ".10g")
    return str(value)


def write_table_csv(path: str | os.PathLike[str], table: dict[str, np.ndarray]) -> Path:
    """Write a column table as CSV, atomically (a header line even when there are no rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(table))
    n = len(next(iter(table.values()))) if table else 0
    columns = [np.asarray(v).tolist() for v in table.values()]
    for row in range(n):
        writer.writerow([_cell(col[row]) for col in columns])
    return atomic_write_text(path, buffer.getvalue())


def merge_measurement_csvs(
    path: str | os.PathLike[str], parts: Iterable[tuple[str, str | os.PathLike[str]]]
) -> int:
    """Concatenate per-image CSVs into one, with a leading ``file`` column, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The combined CSV to write.
    parts : iterable of (str, path)
        ``(file name to put in the "file" column, per-image CSV)``, in output order. Columns
        are the union of all headers (missing cells are empty); unreadable parts are skipped.

    Returns
    -------
    int
        Number of rows written.
    """
    parts = list(parts)
    header: list[str] = []
    for _name, part in parts:
        try:
            with open(part, newline="", encoding="utf-8") as fh:
                first = next(csv.reader(fh), [])
        except OSError:
            continue
        header.extend(c for c in first if c not in header)
    rows = 0
    with atomic_write(path, "w", newline="") as out:  # streamed: memory stays small
        writer = csv.DictWriter(out, ["file", *header], restval="", lineterminator="\n")
        writer.writeheader()
        for name, part in parts:
            try:
                with open(part, newline="", encoding="utf-8") as fh:
                    for row in csv.DictReader(fh):
                        writer.writerow({"file": name, **row})
                        rows += 1
            except OSError:
                continue
    return rows
