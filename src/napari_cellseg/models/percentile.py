"""Percentile (and fixed-range) normalisation, for a whole plane at once or tile by tile.

:func:`percentile_ranges` reads a plane's per-channel ``(low, high)`` percentiles once;
:func:`apply_ranges` writes any part of the plane normalised with them (or with fixed
ranges: the ``range`` method, what every block of a large image gets). Because every step
is elementwise (convert, subtract, divide, clip, each in float32), a tile normalised alone
equals the same tile cut from the normalised plane, bit for bit.
:class:`TiledInput` uses that: the tiler cuts tiles from it as from an array, and only the
tiles in use are ever held in float32. For a 2048² RGB plane that is 48 MiB less at the
peak of inference (``bench/inference_memory.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["PERCENTILE_SAMPLE_PIXELS", "TiledInput", "apply_ranges", "percentile_ranges"]

PERCENTILE_SAMPLE_PIXELS = 1 << 22
"""Planes larger than this (about 4 MPix) estimate percentiles on a strided subsample."""

#: How one channel is normalised: ``(lo, hi)``, ``None`` (a flat channel: zeros) or the
#: index of an earlier, identical channel (grey data given as RGB: one pass, not three).
ChannelRange = tuple[float, float] | int | None


def _sample(channel: np.ndarray) -> np.ndarray:
    """The channel itself, or a strided subsample of about PERCENTILE_SAMPLE_PIXELS pixels."""
    step = math.ceil(math.sqrt(channel.size / PERCENTILE_SAMPLE_PIXELS))
    return channel[::step, ::step] if step > 1 else channel


def percentile_ranges(data: np.ndarray, low: float, high: float) -> list[ChannelRange]:
    """Each channel's ``(low, high)`` percentiles of a ``(C, Y, X)`` plane (see
    :data:`ChannelRange`).

    >>> x = np.stack([np.arange(16, dtype=np.uint8).reshape(4, 4)] * 2)
    >>> percentile_ranges(x, 0.0, 100.0)
    [(0.0, 15.0), 0]
    >>> percentile_ranges(np.zeros((1, 2, 2), np.uint8), 1.0, 99.0)
    [None]
    """
    ranges: list[ChannelRange] = []
    for index in range(len(data)):
        same = next((k for k in range(index) if np.array_equal(data[k], data[index])), None)
        if same is not None:
            ranges.append(same)
            continue
        sample = _sample(data[index]).astype(np.float32)
        lo, hi = (float(v) for v in np.percentile(sample, (low, high)))
        ranges.append((lo, hi) if hi > lo else None)
    return ranges


def apply_ranges(data: np.ndarray, ranges: list[ChannelRange], *, clip: bool) -> np.ndarray:
    """``data`` ``(C, Y, X)`` normalised with ``ranges``, written once into new float32.

    >>> x = np.array([[[0, 10], [20, 200]]], np.uint8)
    >>> apply_ranges(x, [(10.0, 20.0)], clip=True).ravel().tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    result = np.empty(data.shape, np.float32)
    for index, span in enumerate(ranges):
        out = result[index]
        if isinstance(span, int):
            out[...] = result[span]
        elif span is None:
            out.fill(0.0)
        else:
            lo, hi = span
            np.subtract(data[index], np.float32(lo), out=out, dtype=np.float32, casting="unsafe")
            np.divide(out, np.float32(hi - lo), out=out)
            if clip:
                np.clip(out, 0.0, 1.0, out=out)
    return result


class TiledInput:
    """A plane's percentile- or range-normalised model input, made tile by tile as it is cut.

    It stands in for the ``(C, Y, X)`` float32 array that :func:`apply_ranges` would make
    of the whole plane: ``shape``, ``dtype``, ``ndim`` as that array's, and indexing
    ``x[..., y0:y1, x0:x1]`` or ``x[:, y0:y1, x0:x1]`` normalises only that region (any
    other index, and ``numpy.asarray(x)``, makes the whole array).

    Parameters
    ----------
    data : numpy.ndarray
        ``(C, Y, X)`` raw values (a view of the image: never modified).
    ranges : list
        From :func:`percentile_ranges`, or fixed ``(lo, hi)`` pairs (see :data:`ChannelRange`).
    clip : bool
        Clip to [0, 1].

    Examples
    --------
    >>> raw = np.arange(48, dtype=np.uint8).reshape(3, 4, 4)
    >>> lazy = TiledInput(raw, percentile_ranges(raw, 1.0, 99.0), clip=True)
    >>> whole = np.asarray(lazy)
    >>> np.array_equal(lazy[..., 1:3, 2:4], whole[..., 1:3, 2:4]), lazy.shape
    (True, (3, 4, 4))
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, data: np.ndarray, ranges: list[ChannelRange], *, clip: bool) -> None:
        if data.ndim != 3 or len(ranges) != len(data):
            raise ValueError("TiledInput needs (C, Y, X) data and one range per channel")
        self.data = data
        self.ranges = ranges
        self.clip = clip
        self.shape: tuple[int, int, int] = tuple(int(s) for s in data.shape)  # type: ignore[assignment]

    def __getitem__(self, key: Any) -> np.ndarray:
        first = key[0] if isinstance(key, tuple) and len(key) == 3 else None
        every_channel = first is Ellipsis or (isinstance(first, slice) and first == slice(None))
        if every_channel and all(isinstance(k, slice) and k.step in (None, 1) for k in key[1:]):
            return apply_ranges(self.data[:, key[1], key[2]], self.ranges, clip=self.clip)
        return np.asarray(self)[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = apply_ranges(self.data, self.ranges, clip=self.clip)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.shape[0]
