"""Input checks, axes and planes (channel mapping and normalisation: :mod:`.normalise`).

Images are described by one axis letter per dimension from ``"TZCYXS"``: ``T`` time, ``Z``
depth, ``C`` channels, ``Y``/``X`` the plane and ``S`` the RGB(A) samples of a colour image.
Segmentation works plane by plane: :func:`iter_planes` yields every ``YX`` (or ``YXC``) plane
of a stack together with its ``T``/``Z`` index, and :func:`to_model_input` turns one plane into
the float32 ``(channels, Y, X)`` array a network takes, as its model card describes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from napari_cellseg.errors import CellsegError
from napari_cellseg.models.normalise import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALISATION_METHODS,
    normalise,
    to_model_input,
)

# channel mapping and normalisation live in ``normalise``; these names stay importable here
from napari_cellseg.models.percentile import PERCENTILE_SAMPLE_PIXELS

AXIS_LETTERS = "TZCYXS"
"""Axis letters understood everywhere: time, depth, channel, Y, X and RGB(A) samples."""

MIN_SIDE = 4
#: A plane this narrow (X pixels) under a deep stack is taken for channels read as X.
MAX_CHANNELS_GUESS = 8
"""Smallest accepted image height and width in pixels."""

MAX_NDIM = 5
"""Most dimensions an image may have (e.g. ``TZCYX``), as :mod:`napari_cellseg.io.images`."""


def check_image(image: np.ndarray, name: str = "image", *, axes: str | None = None) -> None:
    """Raise a clear :class:`CellsegError` when ``image`` cannot be segmented.

    Rejected: non-numeric (and complex) pixel types, fewer than 2 or more than
    :data:`MAX_NDIM` dimensions, empty dimensions, planes smaller than :data:`MIN_SIDE`
    pixels in Y or X, and NaN or infinite values. Booleans count as numeric (0 and 1).

    Parameters
    ----------
    image : numpy.ndarray
        The image.
    name : str
        How to call it in messages (e.g. a file name).
    axes : str, optional
        Its axes, to find Y and X; guessed with :func:`guess_axes` when omitted.

    Examples
    --------
    >>> check_image(np.zeros((8, 8), np.uint8))
    >>> check_image(np.zeros((2, 8)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: image is too small (2 x 8 pixels, Y x X); ...
    """
    image = np.asarray(image)
    shape = image.shape
    kind = image.dtype.kind
    if kind == "c":
        raise CellsegError(
            f"{name} has complex pixel values ({image.dtype}); convert it to real values first "
            "(e.g. the magnitude, np.abs)"
        )
    if kind not in "biuf":
        raise CellsegError(
            f"{name} has non-numeric pixel type {image.dtype}; convert it to an integer or "
            "float array"
        )
    if image.ndim < 2:
        raise CellsegError(
            f"{name} is not a 2-D image (shape {shape}); pass an array with Y and X axes"
        )
    if image.ndim > MAX_NDIM:
        raise CellsegError(
            f"{name} has {image.ndim} dimensions (shape {shape}); at most {MAX_NDIM} "
            "(T, Z, C, Y, X) are supported: split the stack or choose a plane first"
        )
    if 0 in shape:
        raise CellsegError(f"{name} is empty (shape {shape} has a zero-length dimension)")
    axes = guess_axes(shape) if axes is None else check_axes(shape, axes)
    ny, nx = shape[axes.index("Y")], shape[axes.index("X")]
    if min(ny, nx) < MIN_SIDE:
        raise CellsegError(
            f"{name} is too small ({ny} x {nx} pixels, Y x X); segmentation needs at least "
            f"{MIN_SIDE} x {MIN_SIDE}: check the axes (when the last axis holds channels, give "
            "the axes, e.g. --axes YXC) or use a larger image"
        )
    lead = [shape[i] for i, a in enumerate(axes) if a in "TZ"]
    if lead and nx <= MAX_CHANNELS_GUESS and max(lead) >= 4 * nx and ny >= 4 * nx:
        raise CellsegError(
            f"{name} reads as {int(np.prod(lead))} planes of {ny} x {nx} pixels (axes {axes}, "
            f"shape {shape}); its last axis probably holds {nx} channels: give the axes, "
            "e.g. --axes YXC (and --channels to choose them)"
        )
    if kind == "f":
        finite = np.isfinite(image)
        if not finite.all():
            n_nan = int(np.count_nonzero(np.isnan(image)))
            n_inf = int(image.size - np.count_nonzero(finite) - n_nan)
            raise CellsegError(
                f"{name} contains {n_nan} NaN and {n_inf} infinite values; replace them "
                "first (e.g. np.nan_to_num) or crop them away"
            )


def guess_axes(shape: Sequence[int], rgb: bool | None = None) -> str:
    """Guess the axes of an image from its shape.

    The rules (pass explicit axes when they guess wrong):

    - 2-D: ``"YX"``.
    - 3-D: ``"YXS"`` when the last dimension is 3 or 4 (RGB/RGBA) and ``rgb`` is not False,
      or whenever ``rgb`` is True; otherwise ``"ZYX"``.
    - 4-D: ``"ZYXS"`` likewise; otherwise ``"ZCYX"`` when the second dimension is at most 4,
      else ``"TZYX"``.
    - 5-D: ``"TZYXS"`` likewise; otherwise ``"TZCYX"``.

    Parameters
    ----------
    shape : sequence of int
        The image's shape.
    rgb : bool, optional
        Whether the last dimension holds colour samples (napari's ``layer.rgb``); ``None``
        decides from its length.

    Examples
    --------
    >>> guess_axes((512, 512)), guess_axes((512, 512, 3)), guess_axes((5, 512, 512))
    ('YX', 'YXS', 'ZYX')
    >>> guess_axes((512, 512, 3), rgb=False), guess_axes((10, 2, 64, 64))
    ('ZYX', 'ZCYX')
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim < 2 or ndim > MAX_NDIM:
        raise CellsegError(
            f"cannot guess axes for a {ndim}-D image (shape {shape}); images need 2 to "
            f"{MAX_NDIM} dimensions"
        )
    if ndim == 2:
        return "YX"
    samples = rgb if rgb is not None else shape[-1] in (3, 4)
    if samples:
        return {3: "YXS", 4: "ZYXS", 5: "TZYXS"}[ndim]
    if ndim == 3:
        return "ZYX"
    if ndim == 4:
        return "ZCYX" if shape[1] <= 4 else "TZYX"
    return "TZCYX"


def check_axes(shape: Sequence[int], axes: str) -> str:
    """Validate user-given axes for an image of ``shape``; return them upper-cased.

    The axes need one letter per dimension from ``"TZCYXS"``, no letter twice, both ``Y`` and
    ``X`` with ``Y`` first, and at most one of ``C`` and ``S``.

    Examples
    --------
    >>> check_axes((3, 64, 64), "zyx")
    'ZYX'
    >>> check_axes((64, 64), "YXC")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: axes 'YXC' have 3 letters but the image has ...
    """
    shape = tuple(int(s) for s in shape)
    upper = str(axes).upper()
    if len(upper) != len(shape):
        raise CellsegError(
            f"axes {axes!r} have {len(upper)} letters but the image has {len(shape)} "
            f"dimensions (shape {shape}); give one letter per dimension, e.g. "
            f"{guess_axes(shape) if 2 <= len(shape) <= MAX_NDIM else 'YX'!r}"
        )
    unknown = sorted(set(upper) - set(AXIS_LETTERS))
    if unknown:
        raise CellsegError(
            f"axes {axes!r} contain unknown letters {''.join(unknown)!r}; use letters from "
            f"{AXIS_LETTERS!r} (S = RGB samples)"
        )
    repeated = sorted({a for a in upper if upper.count(a) > 1})
    if repeated:
        raise CellsegError(f"axes {axes!r} repeat {''.join(repeated)!r}; each letter once")
    if "Y" not in upper or "X" not in upper:
        raise CellsegError(f"axes {axes!r} must contain both Y and X")
    if upper.index("Y") > upper.index("X"):
        raise CellsegError(
            f"axes {axes!r} put X before Y; transpose the image so that Y comes first"
        )
    if "C" in upper and "S" in upper:
        raise CellsegError(
            f"axes {axes!r} have both channels (C) and RGB samples (S); only one channel axis "
            "is supported: choose a channel or convert the colour samples first"
        )
    return upper


def _plane_order(axes: str) -> tuple[list[int], list[int]]:
    """Positions of the stack axes (T/Z, in input order) and of Y, X and C/S."""
    outer = [i for i, a in enumerate(axes) if a in "TZ"]
    inner = [axes.index("Y"), axes.index("X")]
    inner += [i for i, a in enumerate(axes) if a in "CS"]
    return outer, inner


def label_axes(axes: str) -> str:
    """Axes of the label stack for an image with ``axes``: T/Z in input order, then ``YX``.

    >>> label_axes("TCZYX"), label_axes("YXS")
    ('TZYX', 'YX')
    """
    return "".join(a for a in axes.upper() if a in "TZ") + "YX"


def label_shape(shape: Sequence[int], axes: str) -> tuple[int, ...]:
    """Shape of the label stack for an image of ``shape`` and ``axes`` (no C or S).

    The labels of the plane with index ``idx`` from :func:`iter_planes` go to
    ``labels[idx]``.

    >>> label_shape((4, 2, 64, 32), "ZCYX")
    (4, 64, 32)
    """
    axes = check_axes(shape, axes)
    outer, inner = _plane_order(axes)
    return tuple(int(shape[i]) for i in outer + inner[:2])


def resolve_axes(shape: Sequence[int], axes: str | None) -> str:
    """The axes of an image of ``shape``: ``axes`` checked (:func:`check_axes`), else guessed.

    >>> resolve_axes((3, 64, 64), "zyx"), resolve_axes((64, 64, 3), None)
    ('ZYX', 'YXS')
    """
    return check_axes(shape, axes) if axes else guess_axes(shape)


def plane_count(shape: Sequence[int], axes: str) -> int:
    """Number of planes :func:`iter_planes` yields (product of the T and Z sizes).

    >>> plane_count((3, 5, 64, 64), "TZYX"), plane_count((64, 64, 3), "YXS")
    (15, 1)
    """
    return math.prod(label_shape(shape, axes)[:-2])


def iter_planes(image: np.ndarray, axes: str) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield every plane of an image with its index over the T/Z axes.

    Each item is ``(index, plane)``: ``index`` is the position over the T and Z axes in their
    input order (``()`` for a single plane), so that ``labels[index]`` of an array of
    :func:`label_shape` receives the plane's labels; ``plane`` is ``(Y, X)``, or
    ``(Y, X, C)`` when the image has a C or S axis (a view, not a copy).

    Examples
    --------
    >>> stack = np.zeros((2, 3, 8, 9), np.uint8)  # Z, C, Y, X
    >>> [(idx, p.shape) for idx, p in iter_planes(stack, "ZCYX")]
    [((0,), (8, 9, 3)), ((1,), (8, 9, 3))]
    """
    image = np.asarray(image)
    axes = check_axes(image.shape, axes)
    outer, inner = _plane_order(axes)
    ordered = np.transpose(image, outer + inner)
    for index in np.ndindex(*ordered.shape[: len(outer)]):
        yield index, ordered[index]


__all__ = [
    "AXIS_LETTERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_NDIM",
    "MIN_SIDE",
    "NORMALISATION_METHODS",
    "PERCENTILE_SAMPLE_PIXELS",
    "check_axes",
    "check_image",
    "guess_axes",
    "iter_planes",
    "label_axes",
    "label_shape",
    "normalise",
    "plane_count",
    "resolve_axes",
    "to_model_input",
]
