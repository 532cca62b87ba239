"""Per-plane labels joined into 3D objects (z) and objects followed over time (t).

Both work on labels whose ids mean something only within one plane (or one frame) and give
ids that mean one object over the whole stack or movie, numbered 1, 2, 3... in order of
first appearance:

* :func:`iter_stitch_planes` matches the objects of each z plane with those of the plane
  above by IoU (intersection over union), one-to-one (:func:`match_objects`);
* :func:`iter_link_frames` matches each frame's objects with the objects of the frames
  before it, up to ``max_gap`` missing frames back, so an object keeps its id over time.

Anisotropy (``z_spacing``, the distance between z planes in xy pixels): an object's cross
section changes more between planes far apart, and for the nested, shrinking cross sections
of a rounded object the IoU of planes ``a`` pixels apart is about the ``a``-th power of the
IoU of neighbouring isotropic planes. So the IoU threshold ``t`` becomes ``t ** a``
(:func:`effective_threshold`) when ``a > 1``; to keep that relaxed threshold from joining
two cells that merely touch, a pair must then also cover at least ``min_overlap`` (default
half) of the smaller of the two objects. Planes closer than a pixel keep ``t``.

Both are generators yielding :class:`~napari_cellseg.events.Progress` (one per plane or
frame) and returning the labels; they can be stopped at any yield. :func:`stitch_planes`
and :func:`link_frames` run them to the end.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Progress, drain
from napari_cellseg.labels.overlap import overlap_table

__all__ = [
    "DEFAULT_IOU",
    "DEFAULT_MAX_GAP",
    "DEFAULT_MIN_OVERLAP",
    "effective_threshold",
    "iter_link_frames",
    "iter_stitch_planes",
    "link_frames",
    "match_objects",
    "stitch_planes",
]

DEFAULT_IOU = 0.25
"""IoU two objects in neighbouring planes (or frames) need to count as one object."""
DEFAULT_MAX_GAP = 2
"""Frames an object may be missing and still keep its id when it reappears."""
DEFAULT_MIN_OVERLAP = 0.5
"""With anisotropic planes: the share of the smaller object a joined pair must cover."""


def effective_threshold(iou_threshold: float, z_spacing: float = 1.0) -> float:
    """The IoU threshold between planes ``z_spacing`` xy pixels apart: ``t ** z_spacing``.

    >>> effective_threshold(0.25), effective_threshold(0.25, 2.0), effective_threshold(0.25, 0.3)
    (0.25, 0.0625, 0.25)
    """
    return float(iou_threshold) ** max(1.0, float(z_spacing))


def match_objects(
    a: np.ndarray, b: np.ndarray, iou_threshold: float, min_overlap: float = 0.0
) -> list[tuple[int, int]]:
    """One-to-one matches between the objects of two label images, by IoU.

    Only overlapping pairs are considered (counted sparsely,
    :func:`~napari_cellseg.labels.overlap.overlap_table`); a pair qualifies when its IoU is
    at least ``iou_threshold`` and its intersection at least ``min_overlap`` of the smaller
    object's area. Among qualifying pairs the total IoU is maximised
    (``scipy.optimize.linear_sum_assignment``), one group of objects linked by qualifying
    pairs at a time, so the matrices stay small.

    Parameters
    ----------
    a, b : numpy.ndarray
        Label images of one shape (0 = background).
    iou_threshold : float
        Least IoU of a match, in [0, 1].
    min_overlap : float
        Least intersection over the smaller object's area, in [0, 1].

    Returns
    -------
    list of (int, int)
        ``(label in a, label in b)`` pairs, sorted.

    Examples
    --------
    >>> a = np.array([[1, 1, 1, 0, 2, 2]])
    >>> b = np.array([[0, 5, 5, 5, 5, 0]])
    >>> match_objects(a, b, 0.25)
    [(1, 5)]
    >>> match_objects(a, b, 0.5)
    []
    """
    table = overlap_table(a, b)
    if table.pair_inter.size == 0:
        return []
    iou = table.pair_iou
    smaller = np.minimum(table.gt_area[table.pair_gt], table.pred_area[table.pair_pred])
    ok = (iou >= iou_threshold) & (table.pair_inter >= min_overlap * smaller)
    rows, cols, weights = table.pair_gt[ok], table.pair_pred[ok], iou[ok]
    if rows.size == 0:
        return []
    n_a, n_b = table.n_gt, table.n_pred
    graph = coo_matrix((np.ones(rows.size), (rows, n_a + cols)), shape=(n_a + n_b,) * 2)
    _, component = connected_components(graph, directed=False)
    group = component[rows]
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    matched: list[tuple[int, int]] = []
    for chunk in np.split(order, starts[1:]):
        if chunk.size == 1:  # the usual case: one object continues into one
            pairs = [(rows[chunk[0]], cols[chunk[0]])]
        else:
            r_ids, r = np.unique(rows[chunk], return_inverse=True)
            c_ids, c = np.unique(cols[chunk], return_inverse=True)
            dense = np.zeros((r_ids.size, c_ids.size))
            dense[r, c] = weights[chunk]
            picked_r, picked_c = linear_sum_assignment(dense, maximize=True)
            keep = dense[picked_r, picked_c] > 0
            pairs = list(zip(r_ids[picked_r[keep]], c_ids[picked_c[keep]], strict=True))
        matched.extend((int(table.gt_labels[i]), int(table.pred_labels[j])) for i, j in pairs)
    return sorted(matched)


def iter_stitch_planes(
    labels_zyx: np.ndarray,
    iou_threshold: float = DEFAULT_IOU,
    *,
    z_spacing: float = 1.0,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> Generator[Progress, None, np.ndarray]:
    """Join the per-plane objects of a z-stack into 3D objects; yields one Progress a plane.

    Parameters
    ----------
    labels_zyx : numpy.ndarray
        ``(Z, Y, X)`` labels; ids need only be unique within a plane.
    iou_threshold : float
        IoU (in (0, 1]) two objects in neighbouring planes need to be one object.
    z_spacing : float
        Distance between planes in xy pixels (z step / pixel size); above 1 the threshold
        is relaxed to ``iou_threshold ** z_spacing`` and pairs must cover ``min_overlap``
        of the smaller object (see the module's docstring).
    min_overlap : float
        See ``z_spacing``; not used for planes at most a pixel apart.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` labels (uint16, or uint32 past 65535 objects), one id per 3D object,
        numbered 1..n in order of first appearance.

    Examples
    --------
    >>> planes = np.array([[[1, 1, 0, 2]], [[7, 7, 0, 0]], [[0, 0, 0, 3]]])
    >>> stitch_planes(planes)[:, 0].tolist()
    [[1, 1, 0, 2], [1, 1, 0, 0], [0, 0, 0, 3]]
    """
    labels = _check(labels_zyx, "z-stack", "(Z, Y, X)", iou_threshold)
    if z_spacing is None or not np.isfinite(z_spacing) or z_spacing <= 0:
        raise CellsegError(f"z spacing must be a positive number of pixels, got {z_spacing}")
    if not 0.0 <= min_overlap <= 1.0:
        raise CellsegError(f"minimum overlap must be between 0 and 1, got {min_overlap}")
    threshold = effective_threshold(iou_threshold, z_spacing)
    guard = float(min_overlap) if z_spacing > 1.0 else 0.0
    out = np.zeros(labels.shape, np.uint32)
    ids_of_previous: dict[int, int] = {}
    next_id = 1
    for z in range(labels.shape[0]):
        matches = match_objects(labels[z - 1], labels[z], threshold, guard) if z else []
        ids = {b: ids_of_previous[a] for a, b in matches}
        next_id = _number_the_rest(labels[z], ids, next_id)
        out[z] = _apply(labels[z], ids)
        ids_of_previous = ids
        yield Progress("stitch", z + 1, labels.shape[0], f"plane {z + 1}/{labels.shape[0]}")
    return _narrow(out, next_id - 1)


def iter_link_frames(
    labels_t: np.ndarray, iou_threshold: float = DEFAULT_IOU, *, max_gap: int = DEFAULT_MAX_GAP
) -> Generator[Progress, None, np.ndarray]:
    """Give each object one id over a time-lapse; yields one Progress a frame.

    Each frame's objects are matched (:func:`match_objects`) with the objects of the frame
    before; those left over with the objects last seen one frame earlier, and so on up to
    ``max_gap`` missing frames: an object that vanishes for at most ``max_gap`` frames keeps
    its id when it reappears. An object without a match starts a new id (so does the
    second daughter of a division); ids are never reused.

    Parameters
    ----------
    labels_t : numpy.ndarray
        ``(T, ...)`` labels, a frame being a plane or a volume; ids need only be unique
        within a frame.
    iou_threshold : float
        IoU (in (0, 1]) an object needs with its earlier self.
    max_gap : int
        Most frames an object may be missing, 0 or more.

    Returns
    -------
    numpy.ndarray
        Labels of the same shape (uint16, or uint32 past 65535 tracks), one id per object
        over the whole movie, numbered in order of first appearance.

    Examples
    --------
    >>> frames = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 0]], [[4, 4, 0, 0]]])
    >>> link_frames(frames, max_gap=1)[:, 0].tolist()
    [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]]
    >>> link_frames(frames, max_gap=0)[:, 0].tolist()
    [[1, 1, 0, 0], [0, 0, 0, 0], [2, 2, 0, 0]]
    """
    labels = _check(
        labels_t, "time-lapse", "(T, Y, X) or (T, Z, Y, X)", iou_threshold, volumes=True
    )
    if isinstance(max_gap, bool) or int(max_gap) != max_gap or max_gap < 0:
        raise CellsegError(f"the largest gap must be a whole number of frames >= 0, got {max_gap}")
    out = np.zeros(labels.shape, np.uint32)
    last_seen: dict[int, int] = {}  # track id -> the frame it was last seen in
    next_id = 1
    n_frames = labels.shape[0]
    for t in range(n_frames):
        frame = labels[t]
        ids: dict[int, int] = {}
        for earlier in range(t - 1, max(-1, t - 2 - int(max_gap)), -1):
            waiting = [track for track, seen in last_seen.items() if seen == earlier]
            if not waiting:
                continue
            before = np.where(np.isin(out[earlier], waiting), out[earlier], 0)
            now = np.where(np.isin(frame, list(ids)), 0, frame) if ids else frame
            ids.update({b: a for a, b in match_objects(before, now, iou_threshold)})
        next_id = _number_the_rest(frame, ids, next_id)
        out[t] = _apply(frame, ids)
        last_seen.update({track: t for track in ids.values()})
        last_seen = {k: v for k, v in last_seen.items() if v >= t - int(max_gap)}
        yield Progress("link", t + 1, n_frames, f"frame {t + 1}/{n_frames}")
    return _narrow(out, next_id - 1)


def stitch_planes(
    labels_zyx: np.ndarray, iou_threshold: float = DEFAULT_IOU, **kwargs
) -> np.ndarray:
    """Run :func:`iter_stitch_planes` to the end and return the 3D labels."""
    return drain(iter_stitch_planes(labels_zyx, iou_threshold, **kwargs))


def link_frames(labels_t: np.ndarray, iou_threshold: float = DEFAULT_IOU, **kwargs) -> np.ndarray:
    """Run :func:`iter_link_frames` to the end and return the linked labels."""
    return drain(iter_link_frames(labels_t, iou_threshold, **kwargs))


# -- internals ---------------------------------------------------------------------------
def _check(
    labels: np.ndarray, what: str, shape: str, iou_threshold: float, *, volumes: bool = False
) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu" or not (labels.ndim == 3 or (volumes and labels.ndim > 3)):
        raise CellsegError(
            f"a {what} of labels must be an integer array {shape}, got {labels.ndim} "
            f"dimension(s) of {labels.dtype}"
        )
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise CellsegError(f"labels must be >= 0 (0 = background), got {labels.min()}")
    if not 0.0 < iou_threshold <= 1.0:
        raise CellsegError(f"the IoU threshold must be in (0, 1], got {iou_threshold}")
    return labels


def _number_the_rest(plane: np.ndarray, ids: dict[int, int], next_id: int) -> int:
    """Give the objects of ``plane`` missing from ``ids`` new ids; return the next free one."""
    for label in np.unique(plane):
        if label and int(label) not in ids:
            ids[int(label)] = next_id
            next_id += 1
    return next_id


def _apply(plane: np.ndarray, ids: dict[int, int]) -> np.ndarray:
    """``plane`` with every label replaced by ``ids[label]`` (0 stays 0)."""
    if not ids:
        return np.zeros(plane.shape, np.uint32)
    keys = np.array(sorted(ids), dtype=np.int64)
    values = np.array([ids[k] for k in keys], dtype=np.uint32)
    flat = plane.astype(np.int64, copy=False)
    where = np.clip(np.searchsorted(keys, flat), 0, keys.size - 1)
    return np.where(keys[where] == flat, values[where], 0).astype(np.uint32)


def _narrow(labels: np.ndarray, top: int) -> np.ndarray:
    return labels.astype(np.uint16) if top <= np.iinfo(np.uint16).max else labels
