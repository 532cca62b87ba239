"""Label images as Fiji/ImageJ ROI sets (``.zip``, via :mod:`roifile`), and back.

One ROI per object and plane, named by its label id (``"7"``; ``"7-z3"``/``"7-t2-z3"`` in a
stack, where names must be unique), with the plane as its Z/T position. An object of one
piece without holes is a polygon ROI; one with holes or several pieces is a composite
(shape) ROI whose rings ImageJ combines by the even-odd rule. Coordinates are sub-pixel
``(x, y)`` with the origin at the image's top-left corner, as in :mod:`.outlines`, so
ImageJ's masks (pixel centres inside) are the label image's objects, pixel for pixel.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.errors import ImageReadError, ImageWriteError
from napari_cellseg.io.atomic import atomic_write
from napari_cellseg.io.files import check_destination, label_dtype, write_problem
from napari_cellseg.io.outlines import Part, fill_into, iter_objects, iter_planes, stack_axes

__all__ = ["labels_to_rois", "read_roi_zip_labels", "write_roi_zip"]

_NAME = re.compile(r"^(\d+)(?:-t(\d+))?(?:-z(\d+))?$")


def _roi(parts: list[Part], name: str, position: dict[str, int], axes: str) -> Any:
    import roifile

    if len(parts) == 1 and not parts[0][1]:
        roi = roifile.ImagejRoi.frompoints(parts[0][0][:-1].astype(np.float32), name=name)
        roi.roitype = roifile.ROI_TYPE.POLYGON
    else:
        path: list[float] = []
        for outer, holes in parts:
            for ring in (outer, *holes):
                path += [0.0, *ring[0]]  # MOVETO
                for x, y in ring[1:-1]:
                    path += [1.0, x, y]  # LINETO
                path.append(4.0)  # CLOSE
        points = np.vstack([ring for outer, holes in parts for ring in (outer, *holes)])
        roi = roifile.ImagejRoi(
            roitype=roifile.ROI_TYPE.RECT,
            name=name,
            multi_coordinates=np.asarray(path, np.float32),
            shape_roi_size=len(path),
            left=int(np.floor(points[:, 0].min())),
            top=int(np.floor(points[:, 1].min())),
            right=int(np.ceil(points[:, 0].max())),
            bottom=int(np.ceil(points[:, 1].max())),
        )
    if "Z" in axes:
        roi.z_position = position["z"] + 1
    if "T" in axes:
        roi.t_position = position["t"] + 1
    if len(axes) == 3:  # a plain stack: ImageJ's slice number too
        roi.position = position[axes[0].lower()] + 1
    return roi


def labels_to_rois(labels: np.ndarray, *, axes: str | None = None) -> list[Any]:
    """One :class:`roifile.ImagejRoi` per object and plane.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer instance labels, 2-D or a stack with leading Z/T axes.
    axes : str, optional
        Axes of `labels`; by default ``YX``, ``ZYX`` or ``TZYX`` by dimension.

    Returns
    -------
    list of roifile.ImagejRoi

    Examples
    --------
    >>> lab = np.zeros((5, 5), np.uint8); lab[1:4, 1:4] = 3; lab[2, 2] = 0
    >>> [(roi.name, roi.composite) for roi in labels_to_rois(lab)]
    [('3', True)]
    """
    labels = np.asarray(labels)
    axes = stack_axes(labels, axes)
    rois = []
    for _index, position, plane in iter_planes(labels, axes):
        for label, parts in iter_objects(plane):
            name = str(label)
            if "T" in axes:
                name += f"-t{position['t'] + 1}"
            if "Z" in axes:
                name += f"-z{position['z'] + 1}"
            rois.append(_roi(parts, name, position, axes))
    return rois


def write_roi_zip(
    path: str | os.PathLike[str], labels: np.ndarray, *, axes: str | None = None
) -> Path:
    """Write the objects of `labels` as an ImageJ ROI set ``.zip``, atomically.

    Raises
    ------
    ImageWriteError
        If the folder is missing or not writable, or the disk is full (nothing is left).
    """
    import zipfile

    p = Path(path)
    check_destination(p, ".zip")
    rois = labels_to_rois(labels, axes=axes)
    try:
        with atomic_write(p, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for roi in rois:
                zf.writestr(f"{roi.name}.roi", roi.tobytes())
    except OSError as exc:
        raise ImageWriteError(p, write_problem(exc)) from exc
    return p


def read_roi_zip_labels(
    path: str | os.PathLike[str], shape: tuple[int, ...], *, axes: str | None = None
) -> np.ndarray:
    """Rasterise an ROI set written by :func:`write_roi_zip` into a label image of `shape`.

    ROIs named like ours (``"7"``, ``"7-z3"``) keep their label; others are numbered after
    the largest one. A pixel belongs to an ROI when its centre lies inside.

    Raises
    ------
    ImageReadError
        If the file is missing or not an ROI set.
    """
    import roifile

    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "file not found; check the path")
    try:
        rois = roifile.roiread(p)
    except Exception as exc:  # roifile raises many kinds for a file that is not an ROI set
        raise ImageReadError(p, f"not an ImageJ ROI set ({exc}); check the file") from None
    rois = rois if isinstance(rois, list) else [rois]
    axes = stack_axes(np.empty((0,) * len(shape)), axes)
    named = [_NAME.match(roi.name or "") for roi in rois]
    top = max((int(m.group(1)) for m in named if m), default=0)
    labels = np.zeros(shape, label_dtype(top + len(rois)))
    extra = top
    for roi, match in zip(rois, named, strict=True):
        if match:
            label = int(match.group(1))
        else:
            extra += 1
            label = extra
        where = {"z": roi.z_position, "t": roi.t_position}
        if len(axes) == 3 and not where[axes[0].lower()]:
            where[axes[0].lower()] = roi.position
        index = tuple(max(int(where[a.lower()] or 1) - 1, 0) for a in axes[:-2])
        if any(i >= s for i, s in zip(index, shape, strict=False)):
            raise ImageReadError(p, f"ROI {roi.name!r} lies on plane {index}, outside {shape}")
        fill_into(labels[index], label, even_odd=roi.coordinates(multi=True))
    return labels
