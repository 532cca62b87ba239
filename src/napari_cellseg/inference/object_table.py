"""The object table: one row per object of a label image (label, area, bounding box).

Measured with one ``bincount`` and one ``find_objects`` (``regionprops`` only for label
images those cannot take), so it costs little beside the post-processing that made the
labels (:mod:`napari_cellseg.inference.postprocess`). Mask R-CNN runs add each object's
``score`` and ``class``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops_table

from napari_cellseg.errors import CellsegError

__all__ = ["object_table"]


def _measure(labels: np.ndarray) -> dict[str, np.ndarray]:
    """``label``, ``area`` and ``bbox_*`` columns: one ``bincount`` and one ``find_objects``."""
    names = ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")
    top = int(labels.max()) if labels.size else 0
    if labels.dtype.kind not in "iu" or int(labels.min(initial=0)) < 0 or top > 4 * labels.size:
        props = regionprops_table(labels, properties=("label", "area", "bbox"))
        table = {"label": np.asarray(props["label"], np.int64)}
        table["area"] = np.asarray(props["area"]).astype(np.int64)
        for k, name in enumerate(names):
            table[name] = np.asarray(props[f"bbox-{k}"], np.int64)
        return table
    counts = np.bincount(labels.ravel(), minlength=top + 1)
    ids = np.flatnonzero(counts[1:]) + 1
    slices = ndi.find_objects(labels.astype(np.intp, copy=False)) if len(ids) else []
    boxes = np.array(
        [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in (slices[i - 1] for i in ids)],
        np.int64,
    ).reshape(-1, 4)
    table = {"label": ids.astype(np.int64), "area": counts[ids].astype(np.int64)}
    for k, name in enumerate(names):
        table[name] = boxes[:, k]
    return table


def object_table(
    labels: np.ndarray,
    *,
    scores: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-object measurements of a 2-D label image.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` labels (0 = background).
    scores, classes : numpy.ndarray, optional
        Indexed by ``label - 1`` (as ``kept`` from
        :func:`~napari_cellseg.inference.postprocess.maskrcnn_instances`).

    Returns
    -------
    dict of str to numpy.ndarray
        ``label``, ``area`` (pixels), ``bbox_y0``, ``bbox_x0``, ``bbox_y1``, ``bbox_x1``
        (half-open), plus ``score`` and ``class`` when given; one row per label present.

    Examples
    --------
    >>> t = object_table(np.array([[0, 1, 1], [2, 0, 0]]), scores=np.array([0.9, 0.7]))
    >>> t["label"].tolist(), t["area"].tolist(), t["score"].tolist()
    ([1, 2], [2, 1], [0.9, 0.7])
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CellsegError(f"object_table needs a 2-D label image, got shape {labels.shape}")
    table = _measure(labels)
    index = table["label"] - 1
    for name, values in (("score", scores), ("class", classes)):
        if values is None:
            continue
        values = np.asarray(values)
        if len(index) and index.max() >= len(values):
            raise CellsegError(
                f"{len(values)} {name}s given but the labels go up to {index.max() + 1}; "
                f"pass one {name} per label (label i -> {name}s[i - 1])"
            )
        table[name] = values[index]
    return table
