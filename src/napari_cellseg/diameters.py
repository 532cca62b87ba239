"""Object diameters: the range a model card or a user may give, and parsing of auto/off/px/µm.

The one place that says what a ``diameter`` value may be (:func:`parse_diameter`); the
prediction parameters, the model card and training read it from here.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from napari_cellseg.errors import CellsegError

DIAMETER_RANGE = (2.0, 500.0)
"""Object diameters (px) a model card or a user may give; outside this range is refused."""

DIAMETER_HELP = (
    "typical object diameter: auto (estimated from the image), off (no rescaling), pixels "
    "(e.g. 40) or micrometres (e.g. 12um, needs the image's pixel size); the image is "
    "rescaled so that objects have the size the model was trained on (default: a fine-tuned "
    "model's own, the median of the objects it was fine-tuned on; auto for a model whose card "
    "records its object size; else off)"
)
_UM_SUFFIXES = ("\u00b5m", "\u03bcm", "um", "micron", "microns")


def parse_diameter(
    value: Any, pixel_size_um: Any = None, *, need_pixels: bool = False
) -> float | str | None:
    """Check a ``diameter`` and put it in its canonical form (pixels when it can).

    Parameters
    ----------
    value : None, str or number
        ``None`` (the model's default), ``"auto"``, ``"off"``, pixels (``40``, ``"40"``,
        ``"40px"``) or micrometres (``"12um"``, ``"12\u00b5m"``).
    pixel_size_um : float or (float, float), optional
        The image's pixel size ``(y, x)`` in micrometres (their geometric mean is used),
        which turns micrometres into pixels.
    need_pixels : bool
        Refuse micrometres that cannot be turned into pixels (no pixel size).

    Returns
    -------
    float, str or None
        ``None``, ``"auto"``, ``"off"``, pixels as a float, or ``"<number>um"`` for
        micrometres without a pixel size.

    Raises
    ------
    CellsegError
        For anything else, pixels outside :data:`DIAMETER_RANGE`, or (``need_pixels``)
        micrometres without a pixel size; one line.

    Examples
    --------
    >>> parse_diameter(None), parse_diameter("Auto"), parse_diameter("off"), parse_diameter("40")
    (None, 'auto', 'off', 40.0)
    >>> parse_diameter("12\u00b5m"), parse_diameter("12 um", (0.5, 0.5)), parse_diameter(12.5)
    ('12um', 24.0, 12.5)
    >>> parse_diameter(800)
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: diameter 800 px is out of range: use 2 to 500 px ...
    >>> parse_diameter("12um", need_pixels=True)
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: diameter 12um needs the image's pixel size: ...
    """
    if value is None:
        return None
    unit = "px"
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text in ("auto", "off"):
            return text
        for suffix in ("px", *_UM_SUFFIXES):
            if text.endswith(suffix):
                unit = "px" if suffix == "px" else "um"
                text = text[: -len(suffix)]
                break
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        number = float("nan")
    if not 0 < number < math.inf:
        raise CellsegError(
            f"diameter takes auto, off, pixels (e.g. 40) or micrometres (e.g. 12um), got {value!r}"
        )
    if unit == "um":
        if pixel_size_um is None:
            if need_pixels:
                raise CellsegError(
                    f"diameter {number:g}um needs the image's pixel size: give the diameter "
                    "in pixels (e.g. 40) or set the image's pixel size"
                )
            return f"{number:g}um"
        sizes = (
            [float(s) for s in pixel_size_um]
            if isinstance(pixel_size_um, (tuple, list))
            else [float(pixel_size_um)]
        )
        number = number / math.prod(sizes) ** (1 / len(sizes))
    lo, hi = DIAMETER_RANGE
    if not lo <= number <= hi:
        given = f" ({value})" if unit == "um" else ""
        raise CellsegError(
            f"diameter {number:g} px{given} is out of range: use {lo:g} to {hi:g} px "
            "(or auto / off)"
        )
    return number
