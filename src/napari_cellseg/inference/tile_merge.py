"""Stitching Mask R-CNN detections of overlapping tiles into one set of objects.

Each tile's detections are clipped to the tile; detections of neighbouring tiles that are
the same object cut by a tile border (or seen twice in the overlap) are joined into one.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.tiling import Tile


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Intersection of two half-open boxes ``(y0, x0, y1, x1)``, or None when empty."""
    box = np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])
    return box if box[0] < box[2] and box[1] < box[3] else None


def _crop(mask: np.ndarray, box: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The part of ``mask`` (covering ``box``) inside ``region`` (which lies inside ``box``)."""
    return mask[region[0] - box[0] : region[2] - box[0], region[1] - box[1] : region[3] - box[1]]


def _clip_to_tile(det: Detections, tile: Tile) -> Detections:
    """Clip boxes (and masks) to the tile region; drop detections left empty."""
    lo = np.array([tile.y0, tile.x0, tile.y0, tile.x0])
    hi = np.array([tile.y1, tile.x1, tile.y1, tile.x1])
    clipped = np.clip(det.boxes, lo, hi)
    if np.array_equal(clipped, det.boxes):
        return det
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    masks = [_crop(m, b, c) for m, b, c in zip(det.masks, det.boxes, clipped, strict=True)]
    return Detections(clipped, det.scores, det.classes, masks).select(keep)


def _border_stats(
    boxes: np.ndarray, tiles: list[Tile], owner: np.ndarray, tolerance: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: is it cut by an inner border of its tile, and its centrality."""
    frame = np.array([[t.y0, t.x0, t.y1, t.x1] for t in tiles], np.int64)[owner]
    inner = np.array([t.inner for t in tiles], bool)[owner]
    gaps = np.concatenate([boxes[:, :2] - frame[:, :2], frame[:, 2:] - boxes[:, 2:]], axis=1)
    gaps = np.where(inner, gaps, np.inf)
    return (gaps <= tolerance).any(axis=1), gaps.min(axis=1)


def _intersecting_pairs(boxes: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i != j``, of intersecting half-open boxes, each pair once.

    A sweep over the boxes sorted by ``y0``: each box meets only the boxes that start inside
    its own row span, so the cost follows the number of near pairs, not ``N**2``.
    """
    order = np.argsort(boxes[:, 0], kind="stable")
    srt = boxes[order]
    ends = np.searchsorted(srt[:, 0], srt[:, 2], side="left")
    pairs = []
    for k in range(len(srt)):
        cand = np.arange(k + 1, ends[k])
        cand = cand[(srt[cand, 1] < srt[k, 3]) & (srt[cand, 3] > srt[k, 1])]
        pairs.extend((int(order[k]), int(order[c])) for c in cand)
    return pairs


def _union(det: Detections, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box and pixel-wise maximum of the masks of ``members``."""
    boxes = det.boxes[members]
    box = np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])
    mask = np.zeros((box[2] - box[0], box[3] - box[1]), np.float32)
    for i, b in zip(members, boxes, strict=True):
        sub = _crop(mask, box, b)
        np.maximum(sub, det.masks[i], out=sub)
    return box, mask


def merge_tile_detections(
    parts: list[tuple[Tile, Detections]],
    image_shape: tuple[int, int],
    *,
    iou_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    containment_threshold: float = 0.5,
    border_tolerance: int = 1,
) -> Detections:
    """Stitch per-tile instance detections (already in image coordinates) across seams.

    Parameters
    ----------
    parts : list of (Tile, Detections)
        Each tile with its detections shifted to image coordinates (boxes are clipped to
        their tile).
    image_shape : tuple of int
        ``(H, W)``; every tile must lie inside it.
    iou_threshold : float
        Two detections of different tiles are the same object when the IoU of their binary
        masks, measured inside the region both tiles saw, exceeds this. That IoU is at least
        the plain IoU, and reaches 1 for the two fragments of an object cut by both tiles.
    mask_threshold : float
        Mask probabilities above this are object pixels.
    containment_threshold : float
        They are also the same object when the smaller one is cut by its tile border and
        more than this fraction of it lies inside the other.
    border_tolerance : int
        A detection whose box is at most this many pixels from an inner border of its tile
        is "cut" there.

    Returns
    -------
    Detections
        Each group of duplicates becomes one detection: the uncut member most central in its
        tile (largest distance to the tile's inner borders, then score) when there is one;
        otherwise (an object larger than the overlap, cut in every tile) the pixel-wise
        maximum of all members' masks, with the most central member's score and class.
        Detections of the same tile are never merged. Output order follows the input order.
    """
    height, width = (int(s) for s in image_shape)
    for tile, _ in parts:
        if not tile.inside((height, width)):
            raise CellsegError(f"{tile} lies outside the image of shape {(height, width)}")
    tiles = [tile for tile, _ in parts]
    clipped = [_clip_to_tile(det, tile) for tile, det in parts]
    det = Detections.concatenate(clipped)
    n, boxes = len(det), det.boxes
    if n == 0:
        return det
    counts = [len(d) for d in clipped]
    owner = np.repeat(np.arange(len(parts)), counts)
    by_tile = np.split(np.arange(n), np.cumsum(counts)[:-1])
    binary = [m > mask_threshold for m in det.masks]
    area = np.array([np.count_nonzero(b) for b in binary], np.int64)
    cut, centrality = _border_stats(boxes, tiles, owner, border_tolerance)

    edges = []
    tile_boxes = np.array([[t.y0, t.x0, t.y1, t.x1] for t in tiles], np.int64)
    for a, b in _intersecting_pairs(tile_boxes):
        shared = _intersection(tile_boxes[a], tile_boxes[b])  # the region both tiles saw
        near = np.concatenate([by_tile[a], by_tile[b]])
        near = near[
            (boxes[near, :2] < shared[2:]).all(axis=1) & (boxes[near, 2:] > shared[:2]).all(axis=1)
        ]
        seen: dict[int, int] = {}  # object pixels inside the shared region
        for p, q in _intersecting_pairs(boxes[near]):
            i, j = near[p], near[q]
            if owner[i] == owner[j]:
                continue
            overlap = _intersection(boxes[i], boxes[j])
            inter = np.count_nonzero(
                _crop(binary[i], boxes[i], overlap) & _crop(binary[j], boxes[j], overlap)
            )
            if inter == 0:
                continue
            for k in (i, j):
                if k not in seen:
                    seen[k] = np.count_nonzero(
                        _crop(binary[k], boxes[k], _intersection(boxes[k], shared))
                    )
            small = i if area[i] <= area[j] else j
            if inter / (seen[i] + seen[j] - inter) > iou_threshold or (
                cut[small] and inter / area[small] > containment_threshold
            ):
                edges.append((i, j))

    edges_arr = np.array(edges, np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges_arr)), edges_arr.T), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    keep = np.zeros(n, bool)
    out_boxes, masks = boxes.copy(), list(det.masks)
    for members in np.split(np.argsort(group, kind="stable"), np.cumsum(np.bincount(group))[:-1]):
        if len(members) == 1:
            keep[members[0]] = True
            continue
        uncut = members[~cut[members]]
        pool = uncut if len(uncut) else members
        best = pool[np.lexsort((area[pool], det.scores[pool], centrality[pool]))[-1]]
        keep[best] = True
        if not len(uncut):
            out_boxes[best], masks[best] = _union(det, members)
    index = np.flatnonzero(keep)
    return Detections(
        out_boxes[index], det.scores[index], det.classes[index], [masks[i] for i in index]
    )
