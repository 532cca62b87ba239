"""Test-time augmentation for detectors: map each copy's detections back and fuse them.

A U-Net's copies are averaged pixel by pixel. A detector's copies give lists of objects, so
here the same object seen in several copies is found (mask IoU) and averaged:

- its score is the mean over *all* copies, a copy that missed the object counting as 0. An
  object only one copy of eight found keeps an eighth of its score and usually falls below
  the score threshold; one that every copy found keeps its mean score;
- its mask probabilities are the mean over the copies that found it (the shape, given that
  the object is there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_cellseg.inference.detections import Detections

#: Two detections from different copies are the same object above this mask IoU.
SAME_OBJECT_IOU = 0.5


def map_back(
    det: Detections, transform: tuple[bool, bool, bool], shape: tuple[int, int]
) -> Detections:
    """Detections on a transformed tile, in the coordinates of the tile itself.

    Parameters
    ----------
    det : Detections
        Found on the tile after ``transform``: transposed first (if set), then flipped along
        rows and/or columns, as ``runner.TTA_TRANSFORMS`` describes.
    transform : tuple of bool
        ``(transpose, flip_rows, flip_columns)``.
    shape : tuple of int
        ``(height, width)`` of the original tile.

    Returns
    -------
    Detections
        The same objects, boxes and masks on the original tile.
    """
    transpose, flip_rows, flip_columns = transform
    if len(det) == 0 or not any(transform):
        return det
    height, width = (shape[1], shape[0]) if transpose else shape  # the transformed tile
    y0, x0, y1, x1 = (det.boxes[:, i].copy() for i in range(4))
    masks = list(det.masks)
    if flip_rows:
        y0, y1 = height - y1, height - y0
        masks = [m[::-1, :] for m in masks]
    if flip_columns:
        x0, x1 = width - x1, width - x0
        masks = [m[:, ::-1] for m in masks]
    if transpose:
        y0, x0, y1, x1 = x0, y0, x1, y1
        masks = [m.T for m in masks]
    return Detections(
        np.stack([y0, x0, y1, x1], axis=1),
        det.scores.copy(),
        det.classes.copy(),
        [np.ascontiguousarray(m) for m in masks],
    )


def fuse_copies(
    copies: Sequence[Detections], mask_threshold: float = 0.5, same_iou: float = SAME_OBJECT_IOU
) -> Detections:
    """One set of detections from the detections of every copy of a tile.

    Parameters
    ----------
    copies : sequence of Detections
        Each copy's detections, already in the tile's coordinates (:func:`map_back`).
    mask_threshold : float
        Mask probability above which a pixel belongs to an object, for matching.
    same_iou : float
        Detections of different copies whose masks overlap by at least this IoU are one
        object. Each copy contributes at most one detection to an object.

    Returns
    -------
    Detections
        One detection per object, highest score first: box = the union of its copies'
        boxes; mask probabilities = their mean over the copies that found it; score = the
        sum of those copies' scores divided by the number of copies; class = that of its
        best-scored copy.
    """
    n_copies = len(copies)
    if n_copies == 0:
        return Detections()
    if n_copies == 1:
        return copies[0]
    every, groups = match_copies(copies, mask_threshold, same_iou)
    if not groups:
        return every
    fused_boxes, scores, classes, masks = [], [], [], []
    for members in groups:
        box, mask = _mean_mask(members, every.boxes, every.masks)
        fused_boxes.append(box)
        masks.append(mask)
        scores.append(float(every.scores[members].sum()) / n_copies)
        classes.append(int(every.classes[members[0]]))
    return Detections(np.array(fused_boxes), np.array(scores), np.array(classes), masks)


def match_copies(
    copies: Sequence[Detections], mask_threshold: float = 0.5, same_iou: float = SAME_OBJECT_IOU
) -> tuple[Detections, list[list[int]]]:
    """The copies' detections, grouped by object (the matching :func:`fuse_copies` uses).

    Returns
    -------
    every : Detections
        All copies' detections, concatenated in copy order.
    groups : list of list of int
        One list of rows of ``every`` per object, its best-scored detection first (the
        objects in descending order of that score); at most one row per copy, each further
        row the free detection of its copy with the highest mask IoU (>= ``same_iou``).
    """
    every = Detections.concatenate(list(copies))
    if len(every) == 0:
        return every, []
    copy_of = np.concatenate([np.full(len(d), i) for i, d in enumerate(copies)])
    binary = [m > mask_threshold for m in every.masks]
    areas = np.array([b.sum() for b in binary], np.int64)
    boxes = every.boxes
    taken = np.zeros(len(every), bool)
    groups = []
    for lead in np.argsort(-every.scores, kind="stable"):
        if taken[lead]:
            continue
        taken[lead] = True
        members = [int(lead)]
        for other_copy in range(len(copies)):
            if other_copy == copy_of[lead]:
                continue
            best = _best_match(lead, other_copy, boxes, binary, areas, copy_of, taken, same_iou)
            if best is not None:
                taken[best] = True
                members.append(best)
        groups.append(members)
    return every, groups


def _best_match(
    lead: int,
    copy: int,
    boxes: np.ndarray,
    binary: list[np.ndarray],
    areas: np.ndarray,
    copy_of: np.ndarray,
    taken: np.ndarray,
    same_iou: float,
) -> int | None:
    """The free detection of ``copy`` whose mask overlaps ``lead``'s most (IoU >= same_iou)."""
    y0, x0, y1, x1 = boxes[lead]
    candidates = np.flatnonzero(
        (copy_of == copy)
        & ~taken
        & (boxes[:, 0] < y1)
        & (boxes[:, 2] > y0)
        & (boxes[:, 1] < x1)
        & (boxes[:, 3] > x0)
    )
    best, best_iou = None, same_iou
    for other in candidates:
        inter = _intersection(boxes[lead], binary[lead], boxes[other], binary[other])
        union = areas[lead] + areas[other] - inter
        iou = inter / union if union else 0.0
        if iou >= best_iou:
            best, best_iou = int(other), iou
    return best


def _intersection(
    box_a: np.ndarray, mask_a: np.ndarray, box_b: np.ndarray, mask_b: np.ndarray
) -> int:
    y0, x0 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    y1, x1 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    if y1 <= y0 or x1 <= x0:
        return 0
    a = mask_a[y0 - box_a[0] : y1 - box_a[0], x0 - box_a[1] : x1 - box_a[1]]
    b = mask_b[y0 - box_b[0] : y1 - box_b[0], x0 - box_b[1] : x1 - box_b[1]]
    return int(np.count_nonzero(a & b))


def _mean_mask(
    members: list[int], boxes: np.ndarray, masks: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The union box of ``members`` and the mean of their mask probabilities in it."""
    member_boxes = boxes[members]
    y0, x0 = member_boxes[:, 0].min(), member_boxes[:, 1].min()
    y1, x1 = member_boxes[:, 2].max(), member_boxes[:, 3].max()
    total = np.zeros((y1 - y0, x1 - x0), np.float32)
    for i in members:
        by0, bx0, by1, bx1 = boxes[i]
        total[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] += masks[i]
    total /= len(members)
    return np.array([y0, x0, y1, x1], np.int64), total
