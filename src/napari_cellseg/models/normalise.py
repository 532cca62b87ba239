"""Channel mapping and normalisation: from an image plane to what a network takes.

:func:`to_model_input` maps an image's channels onto the model's (as its card says) and
normalises each model channel with :func:`normalise`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from napari_cellseg.errors import CellsegError
from napari_cellseg.models.percentile import TiledInput, apply_ranges, percentile_ranges

NORMALISATION_METHODS = ("percentile", "dtype-range", "minmax", "imagenet", "range", "none")
"""Values of ``normalisation["method"]`` that :func:`normalise` understands."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_channels_first(plane: np.ndarray) -> np.ndarray:
    """A ``(Y, X)`` or ``(Y, X, C)`` plane as ``(C, Y, X)`` (a view, no copy).

    Parameters
    ----------
    plane : numpy.ndarray
        One image plane, channels last if any.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    CellsegError
        If the plane is neither 2-D nor 3-D.

    Examples
    --------
    >>> as_channels_first(np.zeros((4, 5, 3))).shape
    (3, 4, 5)
    """
    if plane.ndim == 2:
        return plane[None]
    if plane.ndim == 3:
        return np.moveaxis(plane, -1, 0)
    raise CellsegError(
        f"a plane must be (Y, X) or (Y, X, C), got shape {plane.shape}; use iter_planes"
    )


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 709 luminance of channels-first RGB, as ``skimage.color.rgb2gray``."""
    weights = np.array([0.2125, 0.7154, 0.0721], np.float32)
    return np.tensordot(weights, rgb.astype(np.float32, copy=False), axes=1)[None]


def _channels_hint(n: int, input_channels: int, channel_handling: str) -> str:
    """What to give as ``--channels`` for an image of ``n`` channels (one clause).

    >>> _channels_hint(2, 3, "rgb").split(", or ")
    ['choose the channel that shows the objects, e.g. --channels 0 (read as a grey image; \
channels=(0,) in Python)', '3 channels, e.g. --channels 0,1,1']
    >>> _channels_hint(5, 2, "channels")
    "choose 2 of the image's channels, e.g. --channels 0,1 (channels=(0, 1) in Python)"
    """
    example = tuple(min(i, n - 1) for i in range(input_channels))
    listed = ",".join(map(str, example))
    if channel_handling == "rgb" and input_channels > 1:
        return (
            "choose the channel that shows the objects, e.g. --channels 0 (read as a grey "
            f"image; channels=(0,) in Python), or {input_channels} channels, e.g. "
            f"--channels {listed}"
        )
    return (
        f"choose {input_channels} of the image's channels, e.g. --channels {listed} "
        f"(channels={example} in Python)"
    )


def map_channels(
    data: np.ndarray, input_channels: int, channel_handling: str, channels: Sequence[int] | None
) -> np.ndarray:
    """Channels-first image data -> channels-first model channels (values not rescaled).

    Parameters
    ----------
    data : numpy.ndarray
        ``(C, Y, X)`` image data (see :func:`as_channels_first`).
    input_channels : int
        The model's input channels.
    channel_handling : str
        ``rgb``, ``grey`` or ``channels`` (the card's ``channel_handling``).
    channels : sequence of int or None
        Image channels taken, in order, as the model's channels; ``None`` follows
        ``channel_handling``. One channel for an ``rgb`` model is read as a grey image is:
        repeated into each of its inputs (the Segment tab's signal channel without helper).

    Returns
    -------
    numpy.ndarray
        ``(input_channels, Y, X)``.

    Raises
    ------
    CellsegError
        If the image's channels cannot give the model's (the message says which to choose).

    Examples
    --------
    >>> map_channels(np.zeros((1, 4, 5)), 3, "rgb", None).shape
    (3, 4, 5)
    >>> two = np.stack([np.zeros((4, 5)), np.ones((4, 5))])  # e.g. nuclei, membranes
    >>> map_channels(two, 3, "rgb", (1,))[:, 0, 0].tolist()  # channel 1 as a grey image
    [1.0, 1.0, 1.0]
    """
    n = data.shape[0]
    have = f"the image has {n} channel{'s' * (n != 1)}"
    hint = _channels_hint(n, input_channels, channel_handling)
    if channels is not None:
        channels = tuple(int(c) for c in channels)
        if len(channels) == 1 and input_channels > 1 and channel_handling == "rgb":
            channels = channels * input_channels  # one channel, read as a grey image is
        if len(channels) != input_channels:
            raise CellsegError(
                f"{len(channels)} channels {channels} were chosen but the model takes "
                f"{input_channels}; {hint}"
            )
        bad = [c for c in channels if not 0 <= c < n]
        if bad:
            raise CellsegError(
                f"channel index {bad[0]} is out of range: {have} (0 to {n - 1}); choose another "
                "channel, or give the image's axes (e.g. --axes CYX) if its channels were read "
                "as planes"
            )
        return data[list(channels)]
    if channel_handling not in ("rgb", "grey", "channels"):
        raise CellsegError(
            f"unknown channel handling {channel_handling!r}; expected rgb, grey or channels"
        )
    if channel_handling == "rgb" and n in (1, 3, 4):
        out = np.repeat(data, 3, axis=0) if n == 1 else data[:3]  # RGBA: alpha dropped
    elif channel_handling == "grey" and n in (1, 3, 4):
        out = data if n == 1 else _luminance(data[:3])
    elif channel_handling == "channels" and n == input_channels:
        out = data
    else:
        wants = {"rgb": "RGB", "grey": "one grey channel"}.get(channel_handling, input_channels)
        raise CellsegError(f"{have} but the model takes {wants}; {hint}")
    if out.shape[0] != input_channels:
        raise CellsegError(
            f"channel handling {channel_handling!r} gives {out.shape[0]} channels but the model "
            f"takes {input_channels}; the model card is inconsistent: {hint}"
        )
    return out


def _dtype_max(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0  # bool, float: 1


def _per_channel_stats(value: Any, default: Sequence[float], n: int, what: str) -> np.ndarray:
    values = np.atleast_1d(np.asarray(default if value is None else value, np.float32))
    if len(values) == n:
        return values
    if len(values) == 1:
        return np.repeat(values, n)
    if value is None and n == 1:  # grey model with ImageNet defaults: their average
        return values.mean(keepdims=True)
    raise CellsegError(
        f"normalisation {what} has {len(values)} values but the model takes {n} channels; "
        "fix the model card's normalisation"
    )


def normalise(
    data: np.ndarray,
    normalisation: Mapping[str, Any],
    *,
    dtype: np.dtype | None = None,
    tiled: bool = False,
) -> np.ndarray | TiledInput:
    """Normalise channels-first data, each channel on its own.

    Methods (``normalisation["method"]``):

    - ``"percentile"``: ``(x - p_low) / (p_high - p_low)`` with percentiles ``low`` and
      ``high`` (defaults 1 and 99.8) of each channel, then clipped to [0, 1] unless
      ``"clip": False``. A flat channel becomes zeros; a channel equal to an earlier one
      (grey data as RGB) reuses its result. On planes larger than
      :data:`~.percentile.PERCENTILE_SAMPLE_PIXELS` the percentiles come from a regular strided
      subsample (every k-th row and column), which is fast and accurate for real images.
    - ``"dtype-range"``: integers divided by their type's maximum (255 for uint8, 65535 for
      uint16) or by ``"max"`` when given (e.g. 4095 for 12-bit cameras); booleans give 0/1;
      floats unchanged.
    - ``"minmax"``: ``(x - min) / (max - min)`` per channel; a flat channel becomes zeros.
    - ``"imagenet"``: ``dtype-range``, then ``(x - mean) / std`` with ``"mean"`` and
      ``"std"`` from the dict (a value or one per channel) or ImageNet's; a 1-channel model
      uses the average ImageNet mean and std.
    - ``"range"``: ``(x - lo) / (hi - lo)`` with fixed per-channel ``"lo"`` and ``"hi"``
      lists, clipped to [0, 1] when ``"clip"`` is true (default False); what a large plane
      processed block by block uses so that every block gets the whole plane's statistics.
    - ``"none"``: only cast to float32.

    ``"invert": True`` flips the intensities after the methods that map to [0, 1]
    (``1 - x``; for ``imagenet`` before the mean and std): dark objects on a bright
    background (brightfield) look like bright objects on a dark one (fluorescence), as
    Cellpose's ``invert`` does. With ``"none"`` it is an error.

    Parameters
    ----------
    data : numpy.ndarray
        ``(C, Y, X)`` values; the result is a new float32 ``(C, Y, X)`` array.
    normalisation : mapping
        The model card's normalisation dict.
    dtype : numpy.dtype, optional
        The original pixel type for ``dtype-range`` and ``imagenet`` when ``data`` was
        already converted to float (default: ``data.dtype``).
    tiled : bool, optional
        With ``"percentile"`` or ``"range"``: return a :class:`~.percentile.TiledInput`,
        which normalises each tile as it is cut (the same values, never the whole plane in
        float32 at once). Other methods return the array as usual.

    Examples
    --------
    >>> x = np.array([[[0, 51], [102, 255]]], np.uint8)
    >>> normalise(x, {"method": "dtype-range"}).ravel().tolist()
    [0.0, 0.20000000298023224, 0.4000000059604645, 1.0]
    >>> normalise(x, {"method": "minmax"}).max()
    np.float32(1.0)
    >>> flipped = normalise(x, {"method": "minmax", "invert": True})
    >>> [round(float(v), 2) + 0.0 for v in flipped.ravel()]
    [1.0, 0.8, 0.6, 0.0]
    """
    dtype = np.dtype(data.dtype if dtype is None else dtype)
    method = normalisation.get("method") if isinstance(normalisation, Mapping) else None
    if method not in NORMALISATION_METHODS:
        raise CellsegError(
            f"unknown normalisation {method!r} in the model card; expected one of "
            f"{', '.join(NORMALISATION_METHODS)}"
        )
    invert = bool(normalisation.get("invert", False))
    if invert and method == "none":
        raise CellsegError(
            "inverting needs a normalisation that maps the image to [0, 1]; this model's is "
            "'none': invert the image yourself, or leave invert off"
        )
    if method == "percentile":
        low = float(normalisation.get("low", 1.0))
        high = float(normalisation.get("high", 99.8))
        if not 0.0 <= low < high <= 100.0:
            raise CellsegError(
                f"percentile normalisation needs 0 <= low < high <= 100, got low={low}, high={high}"
            )
        ranges = percentile_ranges(data, low, high)
        return _stretched(data, ranges, bool(normalisation.get("clip", True)), tiled, invert)
    if method == "range":
        lo, hi = (np.asarray(normalisation.get(k, ()), np.float64).ravel() for k in ("lo", "hi"))
        if not len(lo) == len(hi) == len(data):
            raise CellsegError(
                f"range normalisation needs {len(data)} lo and hi values, one per model "
                f"channel; got {len(lo)} and {len(hi)}"
            )
        ranges = [(float(a), float(b)) if b > a else None for a, b in zip(lo, hi, strict=True)]
        return _stretched(data, ranges, bool(normalisation.get("clip", False)), tiled, invert)
    x = data.astype(np.float32)  # always a copy: callers may pass views of the image
    if method == "none":
        return x
    if method in ("dtype-range", "imagenet"):
        scale = float(normalisation.get("max", _dtype_max(dtype)))
        if scale <= 0:
            raise CellsegError(f"normalisation max must be > 0, got {scale}")
        if scale != 1.0:
            x /= np.float32(scale)
        if invert:
            np.subtract(np.float32(1.0), x, out=x)
        if method == "dtype-range":
            return x
        mean = _per_channel_stats(normalisation.get("mean"), IMAGENET_MEAN, len(x), "mean")
        std = _per_channel_stats(normalisation.get("std"), IMAGENET_STD, len(x), "std")
        if np.any(std <= 0):
            raise CellsegError(f"normalisation std must be > 0, got {std.tolist()}")
        return (x - mean[:, None, None]) / std[:, None, None]
    if method == "minmax":
        spans = [(float(c.min()), float(c.max())) for c in x]
        ranges = [(lo, hi) if hi > lo else None for lo, hi in spans]
        return apply_ranges(x, inverted_ranges(ranges) if invert else ranges, clip=False)
    raise AssertionError(f"normalisation {method!r} not handled")  # pragma: no cover


def inverted_ranges(ranges: list) -> list:
    """Per-channel ranges that map each channel's high end to 0 and its low end to 1.

    ``(x - hi) / (lo - hi)`` is ``1 - (x - lo) / (hi - lo)``: swapping a range's ends inverts
    the channel in the same single pass (flat channels and repeats stay as they are).

    >>> inverted_ranges([(0.0, 10.0), None, 0])
    [(10.0, 0.0), None, 0]
    """
    return [(span[1], span[0]) if isinstance(span, tuple) else span for span in ranges]


def with_invert(normalisation: Mapping[str, Any], flip: bool) -> Mapping[str, Any]:
    """``normalisation`` with its ``invert`` flag flipped when ``flip`` (else unchanged).

    >>> with_invert({"method": "percentile"}, True)
    {'method': 'percentile', 'invert': True}
    >>> with_invert({"method": "percentile", "invert": True}, True)["invert"]
    False
    """
    if not flip:
        return normalisation
    return {**normalisation, "invert": not normalisation.get("invert", False)}


def _stretched(data: np.ndarray, ranges: list, clip: bool, tiled: bool, invert: bool) -> Any:
    """``data`` normalised with per-channel ``ranges``: now, or tile by tile when ``tiled``."""
    ranges = inverted_ranges(ranges) if invert else ranges
    return TiledInput(data, ranges, clip=clip) if tiled else apply_ranges(data, ranges, clip=clip)


def to_model_input(
    plane: np.ndarray,
    *,
    input_channels: int,
    channel_handling: str,
    normalisation: Mapping[str, Any],
    channels: Sequence[int] | None = None,
    tiled: bool = False,
) -> np.ndarray | TiledInput:
    """Turn one image plane into the float32 ``(input_channels, Y, X)`` a network takes.

    Channels are mapped first, on the raw values, then each model channel is normalised
    with :func:`normalise`.

    Channel mapping: with ``channels``, image channel ``channels[i]`` feeds model channel
    ``i`` (repeats allowed, e.g. ``(0, 0, 0)``). Otherwise by ``channel_handling``:

    - ``"rgb"``: a grey plane is replicated to 3 channels; RGBA drops alpha; 2 or more than
      4 channels are an error asking for ``channels`` (no silent zero-padding: two
      fluorescence channels and grey + alpha need different choices).
    - ``"grey"``: one channel is used as is; RGB(A) becomes luminance
      (``skimage.color.rgb2gray`` weights, computed before normalisation, which equals
      ``rgb2gray`` of ``dtype-range`` values followed by the normalisation); other counts
      ask for ``channels``.
    - ``"channels"``: the image must have exactly ``input_channels`` channels.

    Parameters
    ----------
    plane : numpy.ndarray
        ``(Y, X)`` or ``(Y, X, C)``, as from :func:`iter_planes`; never modified.
    input_channels, channel_handling, normalisation
        From the model card (:class:`~napari_cellseg.models.card.ModelCard`).
    channels : sequence of int, optional
        Image channel indices, one per model channel.
    tiled : bool, optional
        Normalise tile by tile as the tiles are cut (:func:`normalise`).

    Examples
    --------
    >>> grey = np.full((4, 5), 255, np.uint8)
    >>> x = to_model_input(grey, input_channels=3, channel_handling="rgb",
    ...                    normalisation={"method": "dtype-range"})
    >>> x.shape, x.dtype, float(x.max())
    ((3, 4, 5), dtype('float32'), 1.0)
    """
    plane = np.asarray(plane)
    data = map_channels(as_channels_first(plane), input_channels, channel_handling, channels)
    return normalise(data, normalisation, dtype=plane.dtype, tiled=tiled)
