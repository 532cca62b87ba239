"""Instance segmentation metrics: the DSB2018 score, the GlaS object metrics, pixel overlap.

All functions take a ground-truth and a predicted label image of the same shape (2-D or
n-D, any integer or boolean dtype; 0 is background, every other value is one object and
ids need not be sequential). Object overlaps are computed once, from a joint histogram
of label pairs (:func:`overlap_table`), never with one full-image pass per object.

Conventions
-----------
* DSB2018 score: at IoU threshold ``t`` a prediction and a ground-truth object match
  one-to-one when their IoU is strictly greater than ``t``; ``ap = TP / (TP + FP + FN)``;
  an image's score is the mean over ``t`` in 0.50, 0.55, ..., 0.95.
* A ratio whose denominator is 0 is 1 when both images are empty (nothing to find, nothing
  found: perfect, as DSB-style evaluators score it) and 0 otherwise (e.g. an empty
  prediction of a non-empty ground truth scores 0).
* GlaS (Sirinukunwattana et al. 2017): see :func:`glas_object_f1`,
  :func:`glas_object_dice` and :func:`glas_object_hausdorff`. "The object with maximum
  overlap" breaks ties by the larger Dice (the smaller partner), then the lower label.
  With one image empty the Hausdorff distance is the image diagonal ``sqrt(sum(n**2))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from napari_cellseg.labels.overlap import OverlapTable, check_label_pair, overlap_table
from napari_cellseg.labels.overlap import match_instances as match_instances  # public API

DSB_THRESHOLDS: np.ndarray = np.round(np.arange(0.5, 1.0, 0.05), 2)
"""The ten DSB2018 IoU thresholds 0.50, 0.55, ..., 0.95 (rounded: no float drift)."""

METRIC_KEYS: tuple[str, ...] = (
    "dsb_ap",
    "ap@0.5",
    "f1@0.5",
    "glas_object_f1",
    "glas_object_dice",
    "glas_object_hausdorff",
    "pixel_iou",
    "pixel_dice",
)
"""The keys of :func:`evaluate_pair`'s result, in order."""


def _true_positives(table: OverlapTable, threshold: float) -> int:
    candidate = table.pair_iou > threshold
    if threshold >= 0.5:  # IoU > 0.5 pairs are unique per object: the matching is exact
        return int(candidate.sum())
    rows, cols = table.pair_gt[candidate], table.pair_pred[candidate]
    if rows.size == 0:
        return 0
    ur, ri = np.unique(rows, return_inverse=True)
    uc, ci = np.unique(cols, return_inverse=True)
    weight = np.zeros((ur.size, uc.size))
    weight[ri, ci] = 1.0
    r, c = linear_sum_assignment(weight, maximize=True)  # most one-to-one matches
    return int(weight[r, c].sum())


def _ratio(num: float, den: float, empty_ok: bool) -> float:
    if den:
        return float(num / den)
    return 1.0 if empty_ok else 0.0


def _scores(tp: int, n_gt: int, n_pred: int) -> dict[str, float]:
    fp, fn, both_empty = n_pred - tp, n_gt - tp, n_gt == 0 and n_pred == 0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "ap": _ratio(tp, tp + fp + fn, both_empty),
    }


def matching_at(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> dict:
    """One-to-one matching of objects with IoU > ``iou_threshold``, and its scores.

    Returns ``tp``, ``fp``, ``fn`` (ints) and ``precision``, ``recall``, ``f1`` and
    ``ap = TP / (TP + FP + FN)``. Below 0.5 the matching maximising TP is found with
    :func:`scipy.optimize.linear_sum_assignment`. Both images empty score 1; an empty
    side facing objects scores 0.

    >>> gt = np.array([[1, 1, 0, 2]]); pred = np.array([[4, 4, 0, 0]])
    >>> m = matching_at(gt, pred, 0.5)
    >>> m["tp"], m["fn"], m["precision"], m["recall"], m["ap"]
    (1, 1, 1.0, 0.5, 0.5)
    """
    table = overlap_table(gt, pred)
    return _scores(_true_positives(table, iou_threshold), table.n_gt, table.n_pred)


def _curve(table: OverlapTable, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    values = [
        _scores(_true_positives(table, float(t)), table.n_gt, table.n_pred)["ap"]
        for t in np.round(np.asarray(thresholds, dtype=np.float64), 12)
    ]
    return np.asarray(values, dtype=np.float64)


def dsb_ap_curve(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] | np.ndarray = DSB_THRESHOLDS
) -> np.ndarray:
    """``TP / (TP + FP + FN)`` at each IoU threshold (default 0.50, 0.55, ..., 0.95).

    >>> gt = np.array([[1, 1, 1, 0]]); pred = np.array([[2, 2, 0, 0]])  # IoU 2/3
    >>> dsb_ap_curve(gt, pred, [0.5, 0.7]).tolist()
    [1.0, 0.0]
    """
    return _curve(overlap_table(gt, pred), thresholds)


def dsb_ap(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] | np.ndarray = DSB_THRESHOLDS
) -> float:
    """The DSB2018 score of one image: :func:`dsb_ap_curve` averaged over the thresholds.

    >>> gt = np.array([[1, 1, 1, 0]]); pred = np.array([[2, 2, 0, 0]])  # IoU 2/3
    >>> round(dsb_ap(gt, pred), 2)  # matched at 0.50 ... 0.65: 4 of 10 thresholds
    0.4
    """
    return float(np.mean(dsb_ap_curve(gt, pred, thresholds)))


def _best_partner(table: OverlapTable, of_gt: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per object, the other side's object of maximum overlap (-1: none) and the overlap."""
    own, other = (table.pair_gt, table.pair_pred) if of_gt else (table.pair_pred, table.pair_gt)
    other_area = table.pred_area if of_gt else table.gt_area
    n = table.n_gt if of_gt else table.n_pred
    best, inter = np.full(n, -1, dtype=np.intp), np.zeros(n, dtype=np.int64)
    if own.size:
        order = np.lexsort((other, other_area[other], -table.pair_inter, own))
        first = order[np.r_[True, own[order][1:] != own[order][:-1]]]
        best[own[first]], inter[own[first]] = other[first], table.pair_inter[first]
    return best, inter


def _glas_f1(table: OverlapTable) -> float:
    best, inter = _best_partner(table, of_gt=False)
    hit = best >= 0
    tp = int(np.sum(inter[hit] > 0.5 * table.gt_area[best[hit]]))
    return _scores(tp, table.n_gt, table.n_pred)["f1"]


def glas_object_f1(gt: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object-level F1 score.

    A segmented object is a true positive when its intersection with the ground-truth
    object it overlaps most is more than 50 % of that ground-truth object's area (two
    disjoint objects cannot both cover over half of one, so each ground-truth object is
    matched at most once). ``F1 = 2TP / (2TP + FP + FN)``; both empty give 1.

    >>> gt = np.array([[1, 1, 1, 1, 0, 2]]); pred = np.array([[3, 3, 3, 0, 0, 0]])
    >>> glas_object_f1(gt, pred)  # 3/4 of object 1 covered: TP 1, FN 1
    0.6666666666666666
    """
    return _glas_f1(overlap_table(gt, pred))


def _glas_dice(table: OverlapTable) -> float:
    if table.n_gt == 0 or table.n_pred == 0:
        return 1.0 if table.n_gt == table.n_pred else 0.0
    total = 0.0
    for of_gt, own_area, other_area in (
        (True, table.gt_area, table.pred_area),
        (False, table.pred_area, table.gt_area),
    ):
        best, inter = _best_partner(table, of_gt)
        dice = np.where(best >= 0, 2.0 * inter / (own_area + other_area[best]), 0.0)
        total += 0.5 * float(np.sum(own_area * dice) / np.sum(own_area))
    return total


def glas_object_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object Dice: ``0.5 [sum_i w_i D(G_i, S*(G_i)) + sum_j v_j D(G*(S_j), S_j)]``.

    ``w_i = |G_i| / sum |G|``, ``v_j = |S_j| / sum |S|``; ``S*(G_i)`` is the segmented
    object overlapping ``G_i`` most (Dice 0 when none does), ``G*(S_j)`` likewise.
    Symmetric in ``gt`` and ``pred``; both empty give 1, one empty gives 0.

    >>> gt = np.array([[1, 1, 0, 0]]); pred = np.array([[2, 2, 2, 2]])
    >>> round(glas_object_dice(gt, pred), 4)  # one pair, Dice 2*2/(2+4)
    0.6667
    """
    return _glas_dice(overlap_table(gt, pred))


def _nearest(src: np.ndarray, slices: list, objects: np.ndarray, other: np.ndarray) -> dict:
    """For each index in ``objects`` (of ``src``), the nearest object of ``other``."""
    dist, feature = ndimage.distance_transform_edt(other == 0, return_indices=True)
    nearest = {}
    for i in objects.tolist():
        box = slices[i]
        local = np.where(src[box] == i + 1, dist[box], np.inf)
        at = np.unravel_index(int(np.argmin(local)), local.shape)
        pixel = tuple(s.start + k for s, k in zip(box, at, strict=True))
        target = tuple(int(feature[(axis, *pixel)]) for axis in range(other.ndim))
        nearest[i] = int(other[target]) - 1
    return nearest


def _hausdorff(table: OverlapTable, i: int, j: int, g_slices: list, p_slices: list) -> float:
    """Hausdorff distance between the pixel sets of gt object ``i`` and pred object ``j``."""
    box = tuple(
        slice(min(a.start, b.start), max(a.stop, b.stop))
        for a, b in zip(g_slices[i], p_slices[j], strict=True)
    )
    a, b = table.gt[box] == i + 1, table.pred[box] == j + 1
    edt = ndimage.distance_transform_edt
    return float(max(edt(~b)[a].max(), edt(~a)[b].max()))


def _glas_hausdorff(table: OverlapTable) -> float:
    if table.n_gt == 0 or table.n_pred == 0:
        if table.n_gt == table.n_pred:
            return 0.0
        return float(np.sqrt(np.sum(np.square(table.gt.shape, dtype=np.float64))))
    g_slices = ndimage.find_objects(table.gt)
    p_slices = ndimage.find_objects(table.pred)
    cache: dict[tuple[int, int], float] = {}
    total = 0.0
    for of_gt in (True, False):
        best, _ = _best_partner(table, of_gt)
        lonely = np.flatnonzero(best < 0)
        if lonely.size:  # no overlap: pair with the nearest object of the other side
            src, other = (table.gt, table.pred) if of_gt else (table.pred, table.gt)
            found = _nearest(src, g_slices if of_gt else p_slices, lonely, other)
            best[lonely] = [found[k] for k in lonely.tolist()]
        area = table.gt_area if of_gt else table.pred_area
        side = 0.0
        for k, partner in enumerate(best.tolist()):
            key = (k, partner) if of_gt else (partner, k)
            if key not in cache:
                cache[key] = _hausdorff(table, *key, g_slices, p_slices)
            side += area[k] * cache[key]
        total += 0.5 * float(side) / float(np.sum(area))
    return total


def glas_object_hausdorff(gt: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object Hausdorff distance (pixels), the two-sided area-weighted average.

    ``0.5 [sum_i w_i H(G_i, S*(G_i)) + sum_j v_j H(G*(S_j), S_j)]`` with the weights of
    :func:`glas_object_dice`; an object overlapping nothing is paired with the nearest
    object of the other image (smallest pixel-to-pixel distance). ``H`` is the Euclidean
    Hausdorff distance between the two objects' pixel sets, computed with distance
    transforms inside their union bounding box. Symmetric; both empty give 0; one empty
    gives the image diagonal ``sqrt(sum(n**2 for n in shape))``.

    >>> gt = np.zeros((5, 8), int); gt[1:4, 1:4] = 1
    >>> glas_object_hausdorff(gt, np.roll(gt, 3, axis=1))  # shifted by 3 columns
    3.0
    """
    return _glas_hausdorff(overlap_table(gt, pred))


def pixel_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Foreground (label > 0) intersection over union; both empty give 1.

    >>> pixel_iou(np.array([[1, 1, 0]]), np.array([[0, 3, 3]]))
    0.3333333333333333
    """
    gt, pred = check_label_pair(gt, pred)
    g, p = gt > 0, pred > 0
    return _ratio(int(np.sum(g & p)), int(np.sum(g | p)), True)


def pixel_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Foreground (label > 0) Dice coefficient ``2|G∩S| / (|G| + |S|)``; both empty give 1.

    >>> pixel_dice(np.array([[1, 1, 0]]), np.array([[0, 3, 3]]))
    0.5
    """
    gt, pred = check_label_pair(gt, pred)
    g, p = gt > 0, pred > 0
    return _ratio(2 * int(np.sum(g & p)), int(g.sum()) + int(p.sum()), True)


def evaluate_pair(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """All metrics of one image, keyed by :data:`METRIC_KEYS` (overlaps computed once).

    >>> gt = np.zeros((6, 6), int); gt[1:4, 1:4] = 5
    >>> result = evaluate_pair(gt, gt)
    >>> list(result) == list(METRIC_KEYS), result["dsb_ap"], result["glas_object_hausdorff"]
    (True, 1.0, 0.0)
    """
    table = overlap_table(gt, pred)
    at_half = _scores(_true_positives(table, 0.5), table.n_gt, table.n_pred)
    return {
        "dsb_ap": float(np.mean(_curve(table, DSB_THRESHOLDS))),
        "ap@0.5": at_half["ap"],
        "f1@0.5": at_half["f1"],
        "glas_object_f1": _glas_f1(table),
        "glas_object_dice": _glas_dice(table),
        "glas_object_hausdorff": _glas_hausdorff(table),
        "pixel_iou": pixel_iou(table.gt, table.pred),
        "pixel_dice": pixel_dice(table.gt, table.pred),
    }


def summarise(per_image: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images, plus ``n_images`` (an empty list gives NaN means).

    Keys are those of the first result (then any others seen), each averaged over the
    images that have it.

    >>> summarise([{"dsb_ap": 1.0}, {"dsb_ap": 0.5}])
    {'dsb_ap': 0.75, 'n_images': 2}
    """
    if not per_image:
        return {**dict.fromkeys(METRIC_KEYS, float("nan")), "n_images": 0}
    keys = list(dict.fromkeys(key for result in per_image for key in result))
    summary: dict[str, float] = {
        key: float(np.mean([float(r[key]) for r in per_image if key in r])) for key in keys
    }
    summary["n_images"] = len(per_image)
    return summary
