"""Tiling for inference on images of any size: planning, padding, blending and seam stitching.

Tiles are coordinates only (:class:`Tile`), read as views (``tile.view(image)``): no per-tile
copy of the image is made. Dense outputs (U-Net) are blended with :class:`TileBlender`;
instance outputs (Mask R-CNN) are stitched with :func:`merge_tile_detections`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from napari_cellseg.core.detections import Detections
from napari_cellseg.core.errors import CellsegError

WINDOW_FLOOR = 1e-3
"""Smallest blending weight, so that every pixel of a tile counts a little."""


@dataclass(frozen=True)
class Tile:
    """A rectangle ``[y0, y1) x [x0, x1)`` of an image, read as one network input.

    The ``inner_*`` flags say which sides lie inside the image (shared with another tile)
    rather than on the image border.
    """

    y0: int
    x0: int
    y1: int
    x1: int
    inner_top: bool = False
    inner_left: bool = False
    inner_bottom: bool = False
    inner_right: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the tile."""
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def slices(self) -> tuple[slice, slice]:
        """Slices selecting the tile in the last two axes of an image."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def inner(self) -> tuple[bool, bool, bool, bool]:
        """``(inner_top, inner_left, inner_bottom, inner_right)``."""
        return self.inner_top, self.inner_left, self.inner_bottom, self.inner_right

    def inside(self, shape: tuple[int, int]) -> bool:
        """Whether the tile lies inside an image of ``shape`` (H, W)."""
        return min(self.y0, self.x0) >= 0 and self.y1 <= shape[0] and self.x1 <= shape[1]

    def view(self, array: np.ndarray) -> np.ndarray:
        """The tile of ``array`` (..., H, W) as a view (no copy)."""
        return array[..., self.y0 : self.y1, self.x0 : self.x1]


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    return [*range(0, size - tile, stride), size - tile]


def plan_tiles(shape: tuple[int, int], tile_size: int, overlap: int) -> list[Tile]:
    """Tiles covering an image, in row-major order.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the image.
    tile_size : int
        Side of the square tiles. An image side shorter than this gets one tile spanning it
        (the model wrapper pads it).
    overlap : int
        Minimum overlap of neighbouring tiles; the stride is ``tile_size - overlap``. The last
        tile of a row/column is shifted inwards to end at the image border, so it may overlap
        its neighbour by more.

    Returns
    -------
    list of Tile

    Raises
    ------
    CellsegError
        For ``tile_size < 1``, ``overlap < 0``, ``overlap >= tile_size`` or an empty image.

    Examples
    --------
    >>> [(t.y0, t.x0, t.y1, t.x1) for t in plan_tiles((100, 150), 100, 20)]
    [(0, 0, 100, 100), (0, 50, 100, 150)]
    """
    if len(shape) != 2:
        raise CellsegError(f"tiling needs a 2-D (height, width) shape, got {tuple(shape)}")
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise CellsegError(f"cannot tile an empty image of shape {(height, width)}")
    if tile_size < 1:
        raise CellsegError(f"tile size must be at least 1 pixel, got {tile_size}")
    if overlap < 0 or overlap >= tile_size:
        raise CellsegError(
            f"tile overlap must be between 0 and tile size - 1 ({tile_size - 1}), got {overlap}"
        )
    stride = tile_size - overlap
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    return [
        Tile(y0, x0, y1, x1, y0 > 0, x0 > 0, y1 < height, x1 < width)
        for y0 in _starts(height, tile_size, stride)
        for x0 in _starts(width, tile_size, stride)
        for y1, x1 in [(y0 + tile_h, x0 + tile_w)]
    ]


def pad_to_multiple(
    array: np.ndarray, multiple: int, mode: str = "reflect"
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes at the bottom/right up to a multiple of ``multiple``.

    Parameters
    ----------
    array : np.ndarray
        (..., H, W) array.
    multiple : int
        Required divisor of the padded height and width (e.g. 32 for a 5-level U-Net).
    mode : str
        :func:`numpy.pad` mode. ``"reflect"`` falls back to ``"edge"`` on axes of size 1.

    Returns
    -------
    padded : np.ndarray
        The padded array (``array`` itself when no padding is needed).
    pad : tuple of int
        ``(pad_h, pad_w)`` added; undo with :func:`crop_padding`.

    Examples
    --------
    >>> padded, pad = pad_to_multiple(np.arange(6.0).reshape(2, 3), 4)
    >>> padded.shape, pad
    ((4, 4), (2, 1))
    >>> crop_padding(padded, pad).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    if multiple < 1:
        raise CellsegError(f"padding multiple must be at least 1, got {multiple}")
    if array.ndim < 2:
        raise ValueError(f"expected an array (..., H, W), got shape {array.shape}")
    pads = tuple(int(-s % multiple) for s in array.shape[-2:])
    if pads == (0, 0):
        return array, (0, 0)
    lead = [(0, 0)] * (array.ndim - 2)
    modes = ["edge" if mode == "reflect" and size == 1 else mode for size in array.shape[-2:]]
    if modes[0] == modes[1]:
        padded = np.pad(array, [*lead, (0, pads[0]), (0, pads[1])], mode=modes[0])
    else:
        padded = np.pad(array, [*lead, (0, pads[0]), (0, 0)], mode=modes[0])
        padded = np.pad(padded, [*lead, (0, 0), (0, pads[1])], mode=modes[1])
    return padded, (pads[0], pads[1])


def crop_padding(array: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_to_multiple` on an array (..., H + pad_h, W + pad_w) (a view)."""
    height, width = array.shape[-2:]
    return array[..., : height - pad[0], : width - pad[1]]


def _ramp(size: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    weights = np.ones(size)
    n = min(overlap, (size - 1) // 2)
    if n > 0:
        # raised cosine; ramps of two tiles overlapping by exactly n pixels sum to 1
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1))
        if start:
            weights[:n] = ramp
        if end:
            weights[size - n :] = ramp[::-1]
    return weights


def blend_window(
    tile_h: int,
    tile_w: int,
    overlap: int,
    *,
    top: bool = True,
    left: bool = True,
    bottom: bool = True,
    right: bool = True,
) -> np.ndarray:
    """Blending weights of a tile: 1 inside, a raised-cosine ramp over the overlap band.

    Parameters
    ----------
    tile_h, tile_w : int
        Tile size.
    overlap : int
        Width of the ramp (capped at ``(side - 1) // 2``, so the centre is always 1).
    top, left, bottom, right : bool
        Which sides ramp (inner tile borders); the others keep weight 1 up to the edge.

    Returns
    -------
    np.ndarray
        (tile_h, tile_w) float32 weights in ``[WINDOW_FLOOR, 1]``.

    Examples
    --------
    >>> w = blend_window(5, 7, 2)
    >>> float(w[2, 3]), bool(w.min() > 0), bool(w[0, 0] < w[1, 1] < w[2, 2])
    (1.0, True, True)
    >>> bool((blend_window(4, 4, 2, top=False, left=False)[0, 0] == 1))
    True
    """
    weights = np.outer(_ramp(tile_h, overlap, top, bottom), _ramp(tile_w, overlap, left, right))
    return np.maximum(weights, WINDOW_FLOOR).astype(np.float32)


class TileBlender:
    """Accumulate per-tile dense outputs into one image with smooth seams.

    Parameters
    ----------
    channels : int
        Number of output channels C.
    shape : tuple of int
        ``(H, W)`` of the image.
    overlap : int
        Tile overlap (width of the blending ramp at inner tile borders).
    dtype : numpy dtype
        Accumulator dtype.

    Notes
    -----
    Memory is one (C, H, W) and one (H, W) accumulator; :meth:`result` divides in place and
    returns the first, so no further full-size copy is made.
    """

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        overlap: int,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        height, width = (int(s) for s in shape)
        self.channels = int(channels)
        self.shape = (height, width)
        self.overlap = int(overlap)
        self._sum = np.zeros((self.channels, height, width), dtype)
        self._weight = np.zeros((height, width), dtype)
        self._windows: dict[tuple[int, int, bool, bool, bool, bool], np.ndarray] = {}
        self._done = False

    def window(self, tile: Tile) -> np.ndarray:
        """The (cached) blending window of ``tile``: ramps only at its inner borders."""
        key = (*tile.shape, *tile.inner)
        if key not in self._windows:
            sides = dict(zip(("top", "left", "bottom", "right"), tile.inner, strict=True))
            window = blend_window(*tile.shape, self.overlap, **sides)
            self._windows[key] = window.astype(self._weight.dtype)
        return self._windows[key]

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """Add a tile's output ``values`` (C, th, tw) (or (th, tw) when C == 1)."""
        if self._done:
            raise RuntimeError("TileBlender.add called after result()")
        values = np.asarray(values)
        if values.ndim == 2 and self.channels == 1:
            values = values[None]
        if values.shape != (self.channels, *tile.shape):
            raise ValueError(
                f"tile output of shape {values.shape} does not match "
                f"(channels, tile height, tile width) = {(self.channels, *tile.shape)}"
            )
        if not tile.inside(self.shape):
            raise ValueError(f"{tile} lies outside the image of shape {self.shape}")
        window = self.window(tile)
        ys, xs = tile.slices
        self._sum[:, ys, xs] += values * window
        self._weight[ys, xs] += window

    def result(self) -> np.ndarray:
        """The blended (C, H, W) output (weighted mean of all tiles covering each pixel)."""
        if not self._done:
            if self._weight.size and self._weight.min() <= 0:
                raise CellsegError("some pixels were not covered by any tile")
            self._sum /= self._weight
            self._done = True
        return self._sum


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
