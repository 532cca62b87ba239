"""Tiling for inference on images of any size: planning, padding and blending.

Tiles are coordinates only (:class:`Tile`), read as views (``tile.view(image)``): no per-tile
copy of the image is made. Dense outputs (U-Net) are blended with :class:`TileBlender`;
instance outputs (Mask R-CNN) are stitched with
:func:`napari_cellseg.inference.tile_merge.merge_tile_detections`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_cellseg.errors import CellsegError

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


def even_axis(size: int, tile_size: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Side and starts of the fewest equal tiles covering ``size`` pixels, spread evenly.

    Each tile holds up to ``tile_size`` pixels of its own plus the ``overlap`` it shares, so
    its side is at most ``tile_size + overlap``: ``n = ceil((size - overlap) / tile_size)``
    tiles, each of the smallest side that covers ``size`` with that overlap, rounded up to
    ``multiple``; when that exceeds ``tile_size + overlap``, one tile more (smaller tiles
    that need no padding), else sides of ``tile_size + overlap``. A side up to
    ``tile_size + overlap`` is one tile: cutting it would cost more than the overlap saves.
    Neighbours overlap by ``overlap`` or more.

    Examples
    --------
    >>> even_axis(1024, 512, 64, 32), even_axis(2048, 512, 64, 32)
    ((544, [0, 480]), (576, [0, 491, 981, 1472]))
    >>> even_axis(696, 512, 64, 32), even_axis(520, 512, 64, 32)
    ((384, [0, 312]), (520, [0]))
    >>> even_axis(256, 128, 16, 32)  # 2 tiles would need 160 > 144: 3 of 96
    (96, [0, 80, 160])
    """
    largest = tile_size + overlap
    if size <= largest:
        return size, [0]
    fewest = -(-(size - overlap) // tile_size)
    for n in (fewest, fewest + 1):  # one more tile when that avoids padding every tile
        side = -(-(size + (n - 1) * overlap) // n)  # the smallest that covers, rounded up
        side = -(-side // multiple) * multiple
        if side <= largest:
            break
    else:
        n, side = fewest, largest
    return side, [round(k * (size - side) / (n - 1)) for k in range(n)]


def plan_tiles(
    shape: tuple[int, int], tile_size: int, overlap: int, *, multiple: int | None = None
) -> list[Tile]:
    """Tiles covering an image, in row-major order.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the image.
    tile_size : int
        Side of the square tiles. An image side shorter than this gets one tile spanning it
        (the model wrapper pads it).
    overlap : int
        Minimum overlap of neighbouring tiles.
    multiple : int, optional
        ``None``: tiles of ``tile_size`` (the stride is ``tile_size - overlap``) and the last
        tile of a row/column shifted inwards to end at the image border, so it may overlap
        its neighbour by more (Mask R-CNN: every tile at the scale the detector expects).
        An int: even tiles (:func:`even_axis`): the fewest tiles holding at most
        ``tile_size`` pixels of their own plus the overlap (side at most
        ``tile_size + overlap``), all of one size rounded up to ``multiple``, spread evenly:
        a 1024² image costs 4 tiles of 544² (1.13× its pixels) instead of 9 of 512² (2.25×),
        a 520×696 one 2 tiles of 520×384 (1.15× once padded) instead of 4 of 512² (2.9×).

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
    >>> [(t.y0, t.x0, t.y1, t.x1) for t in plan_tiles((100, 150), 80, 20, multiple=8)]
    [(0, 0, 100, 88), (0, 62, 100, 150)]
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
    if multiple is None:
        stride = tile_size - overlap
        tile_h, starts_y = min(tile_size, height), _starts(height, tile_size, stride)
        tile_w, starts_x = min(tile_size, width), _starts(width, tile_size, stride)
    else:
        if multiple < 1:
            raise CellsegError(f"tile multiple must be at least 1 pixel, got {multiple}")
        tile_h, starts_y = even_axis(height, tile_size, overlap, multiple)
        tile_w, starts_x = even_axis(width, tile_size, overlap, multiple)
    return [
        Tile(y0, x0, y1, x1, y0 > 0, x0 > 0, y1 < height, x1 < width)
        for y0 in starts_y
        for x0 in starts_x
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
        self._sum = self._zeros((self.channels, height, width), dtype)
        self._weight = self._zeros((height, width), dtype)
        self._windows: dict[tuple[int, int, bool, bool, bool, bool], Any] = {}
        self._done = False

    def _zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """An accumulator (a subclass may keep them elsewhere, e.g. on a GPU)."""
        return np.zeros(shape, dtype)

    def _accumulator_window(self, window: np.ndarray) -> Any:
        """A blending window in the accumulators' dtype and place."""
        return window.astype(self._weight.dtype)

    def window(self, tile: Tile) -> np.ndarray:
        """The (cached) blending window of ``tile``: ramps only at its inner borders."""
        key = (*tile.shape, *tile.inner)
        if key not in self._windows:
            sides = dict(zip(("top", "left", "bottom", "right"), tile.inner, strict=True))
            window = blend_window(*tile.shape, self.overlap, **sides)
            self._windows[key] = self._accumulator_window(window)
        return self._windows[key]

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """Add a tile's output ``values`` (C, th, tw) (or (th, tw) when C == 1)."""
        if self._done:
            raise RuntimeError("TileBlender.add called after result()")
        values = self._values(values)
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

    def _values(self, values: Any) -> Any:
        return np.asarray(values)

    def result(self) -> np.ndarray:
        """The blended (C, H, W) output (weighted mean of all tiles covering each pixel)."""
        if not self._done:
            if self.shape[0] * self.shape[1] and not self._covered():
                raise CellsegError("some pixels were not covered by any tile")
            self._sum /= self._weight
            self._done = True
        return self._sum

    def _covered(self) -> bool:
        """Whether every pixel has some weight (every window is > 0 everywhere)."""
        return bool(self._weight.min() > 0)
