"""Object overlaps of two label images, counted once from a joint histogram of label pairs.

:func:`overlap_table` is what every object metric in :mod:`napari_cellseg.labels.metrics` is
computed from: each object's area and its intersection with every object of the other image,
without one full-image pass per object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_cellseg.errors import CellsegError


@dataclass(frozen=True)
class OverlapTable:
    """Sparse overlap of two label images (objects re-indexed 0..n-1 in label order).

    ``gt`` / ``pred`` hold the images relabelled 1..n (0 background); ``gt_labels`` /
    ``pred_labels`` the original ids; ``pair_*`` list every overlapping (gt, pred) pair once
    with its intersection in pixels.
    """

    gt: np.ndarray
    pred: np.ndarray
    gt_labels: np.ndarray
    pred_labels: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    pair_inter: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_labels.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_labels.size)

    @property
    def pair_iou(self) -> np.ndarray:
        """IoU of each overlapping pair."""
        union = self.gt_area[self.pair_gt] + self.pred_area[self.pair_pred] - self.pair_inter
        return self.pair_inter / union

    def iou_matrix(self) -> np.ndarray:
        """Dense ``(n_gt, n_pred)`` IoU matrix (zero where objects do not overlap)."""
        iou = np.zeros((self.n_gt, self.n_pred), dtype=np.float64)
        iou[self.pair_gt, self.pair_pred] = self.pair_iou
        return iou


def _as_labels(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == bool:
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        if not (np.all(np.isfinite(x)) and np.array_equal(x, np.round(x))):
            raise CellsegError(f"{name} labels must be whole numbers, got dtype {x.dtype}")
        x = x.astype(np.int64)
    elif not np.issubdtype(x.dtype, np.integer):
        raise CellsegError(f"{name} labels must be an integer array, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.signedinteger) and x.size and x.min() < 0:
        raise CellsegError(f"{name} labels must be >= 0 (0 = background), got {x.min()}")
    return x


def check_label_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = _as_labels(gt, "ground-truth"), _as_labels(pred, "predicted")
    if gt.shape != pred.shape:
        raise CellsegError(
            f"ground truth of shape {gt.shape} and prediction of shape {pred.shape} differ; "
            "metrics need label images of the same shape"
        )
    return gt, pred


def _relabel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (image relabelled 1..n, original labels, areas) in one pass."""
    flat = x.ravel()
    if flat.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(x.shape, dtype=np.intp), empty, empty
    top = int(flat.max())
    if top <= max(1 << 16, 2 * flat.size):  # small ids: a lookup table beats sorting
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=1)
        labels = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, dtype=np.intp)
        lut[labels] = np.arange(1, labels.size + 1)
        return lut[flat].reshape(x.shape), labels, counts[labels].astype(np.int64)
    uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    seq = inverse.reshape(x.shape).astype(np.intp)
    if uniq[0] == 0:
        return seq, uniq[1:], counts[1:].astype(np.int64)
    return seq + 1, uniq, counts.astype(np.int64)


def overlap_table(gt: np.ndarray, pred: np.ndarray) -> OverlapTable:
    """Count the pixels shared by every overlapping (ground-truth, prediction) object pair.

    >>> gt = np.array([[1, 1, 0, 7]]); pred = np.array([[0, 3, 3, 3]])
    >>> t = overlap_table(gt, pred)
    >>> t.gt_labels.tolist(), t.pair_inter.tolist(), t.iou_matrix().round(2).tolist()
    ([1, 7], [1, 1], [[0.25], [0.33]])
    """
    gt, pred = check_label_pair(gt, pred)
    g, gl, ga = _relabel(gt)
    p, pl, pa = _relabel(pred)
    width = pl.size + 1
    both = (g > 0) & (p > 0)
    code = g[both].astype(np.int64) * width + p[both]
    cells = (gl.size + 1) * width
    if cells <= max(1 << 22, 4 * code.size):
        hist = np.bincount(code, minlength=cells)
        codes = np.flatnonzero(hist)
        inter = hist[codes]
    else:  # many objects: only the pairs that occur
        codes, inter = np.unique(code, return_counts=True)
    return OverlapTable(
        g, p, gl, pl, ga, pa, codes // width - 1, codes % width - 1, inter.astype(np.int64)
    )


def match_instances(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every ground-truth object (rows) with every predicted object (columns).

    Rows and columns follow the sorted non-zero labels of ``gt`` and ``pred``.

    >>> gt = np.array([[1, 1, 2, 2]]); pred = np.array([[5, 5, 5, 0]])
    >>> match_instances(gt, pred).round(3).tolist()
    [[0.667], [0.25]]
    """
    return overlap_table(gt, pred).iou_matrix()
