"""From ``PredictParams.diameter`` to the scale a run uses: ``iter_choose_scale``.

``None`` means the model's default: ``"auto"`` when its card records ``object_diameter``,
else ``"off"`` (no rescaling, as before object sizes existed). A number is pixels; a
micrometre value is turned into pixels with the image's pixel size. ``"auto"`` estimates
the diameter from the image (:func:`iter_estimate_diameter`): a quick pass at the native
scale on a central crop, the median equivalent diameter of its whole objects; when that is
far from the model's (outside x0.8-1.25), a pass at the implied scale, and once more if
still far; the pass that saw objects nearest the model's size gives the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.events import CancelledError, Notice, Progress, relay
from napari_cellseg.inference.object_size import median_diameter, scale_for
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel, read_card
from napari_cellseg.params import DIAMETER_RANGE, PredictParams, parse_diameter

__all__ = ["ESTIMATE_SIDE", "MAX_PASSES", "iter_choose_scale", "iter_estimate_diameter"]

ESTIMATE_SIDE = 512
"""Edge (px at the pass's scale) of the central crop each estimation pass segments."""
MAX_PASSES = 3
"""Estimation passes at most: the native scale, the implied one, one refinement."""
GOOD_RATIO = 1.25
"""A pass whose objects are within this factor of the model's diameter ends the search."""

Event = Progress | Notice


def model_card(model: str | Path | LoadedModel) -> ModelCard:
    """The card of a loaded model or weight file (only the header is read)."""
    return model.card if isinstance(model, LoadedModel) else read_card(model)


def iter_choose_scale(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams,
    *,
    pixel_size_um: float | Sequence[float] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Event, None, tuple[float | None, float]]:
    """The object diameter (px) a run is scaled for, and the scale; events while estimating.

    Parameters
    ----------
    image : array-like
        The image, axes ``params.axes`` (resolved); only a central crop of one plane is
        read when estimating.
    model : str, Path or LoadedModel
        The model (its card gives the reference diameter).
    params : PredictParams
        ``params.diameter`` as the user gave it.
    pixel_size_um : float or (float, float), optional
        The image's pixel size, for a diameter in micrometres.
    should_stop : callable, optional
        Polled while estimating; True raises :class:`CancelledError`.

    Returns
    -------
    diameter : float or None
        The diameter used (``None``: none, not rescaled).
    scale : float
        ``card.reference_diameter() / diameter``, or 1.0 when within 10 % of 1.

    Raises
    ------
    CellsegError
        A micrometre diameter without a pixel size, or pixels outside 2-500.
    """
    value = parse_diameter(params.diameter, pixel_size_um, need_pixels=True)
    if value == "off":
        return None, 1.0
    card = model_card(model)
    if value is None:
        if card.object_diameter is None:
            return None, 1.0
        value = "auto"
    reference = card.reference_diameter()
    if value != "auto":
        return float(value), scale_for(reference, float(value))
    diameter = yield from iter_estimate_diameter(
        image, model, params, reference, should_stop=should_stop
    )
    if diameter is None:
        yield _checked(
            Notice(
                "no objects found to estimate the object diameter: not rescaled",
                level="warning",
            ),
            should_stop,
        )
        return None, 1.0
    scale = scale_for(reference, diameter)
    action = f"rescaled \u00d7{scale:.2f}" if scale != 1.0 else "not rescaled"
    yield _checked(
        Notice(f"estimated object diameter {diameter:.0f} px \u2192 {action}"), should_stop
    )
    return diameter, scale


def iter_estimate_diameter(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams,
    reference: float,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Event, None, float | None]:
    """Estimate the median object diameter (px) of ``image`` with quick passes of the model.

    Each pass segments a central crop of the middle plane (at most :data:`ESTIMATE_SIDE`
    px at the pass's scale) and measures the median equivalent diameter of its whole
    objects (:func:`~napari_cellseg.inference.object_size.median_diameter`). The first
    pass is at the native scale; while the objects it saw are more than
    :data:`GOOD_RATIO` away from ``reference``, the next runs at ``reference / estimate``
    (:data:`MAX_PASSES` in all). Returns ``None`` when no pass found an object.
    """
    from napari_cellseg.inference.planes import iter_predict_planes

    axes = params.axes or ""
    quick = replace(params, diameter="off", keep_probabilities=False, tta=1)
    scale, best = 1.0, None  # best: (how far from the reference, estimate)
    for number in range(MAX_PASSES):
        yield _checked(
            Progress("diameter", number, MAX_PASSES, "estimating the object size"), should_stop
        )
        crop, crop_axes = central_crop(image, axes, math.ceil(ESTIMATE_SIDE / scale))
        run = replace(quick, axes=crop_axes)
        prediction = yield from relay(
            iter_predict_planes(crop, model, run, should_stop=should_stop, scale=scale),
            _warnings_only,
        )
        estimate = median_diameter(prediction.labels)
        if estimate is None:
            break
        error = abs(math.log(estimate * scale / reference))
        if best is None or error < best[0]:
            best = (error, estimate)
        lo, hi = DIAMETER_RANGE
        following = scale_for(reference, min(max(estimate, lo), hi))
        if error <= math.log(GOOD_RATIO) or abs(math.log(following / scale)) <= math.log(1.1):
            break
        scale = following
    yield _checked(Progress("diameter", MAX_PASSES, MAX_PASSES), should_stop)
    return None if best is None else best[1]


def central_crop(image: Any, axes: str, side: int) -> tuple[np.ndarray, str]:
    """The middle plane's central ``side`` x ``side`` px (channels kept), read as numpy.

    >>> crop, axes = central_crop(np.zeros((5, 3, 100, 80)), "ZCYX", 50)
    >>> crop.shape, axes
    ((3, 50, 50), 'CYX')
    """
    index: list[Any] = []
    for axis, size in zip(axes, np.shape(image), strict=True):
        if axis in "TZ":
            index.append(size // 2)
        elif axis in "YX":
            start = max(0, (size - side) // 2)
            index.append(slice(start, start + side))
        else:
            index.append(slice(None))
    return np.asarray(image[tuple(index)]), "".join(a for a in axes if a not in "TZ")


def _warnings_only(event: Any) -> Any | None:
    return event if isinstance(event, Notice) and event.level == "warning" else None


def _checked(event: Event, should_stop: Callable[[], bool] | None) -> Event:
    if should_stop is not None and should_stop():
        raise CancelledError("segmentation was stopped")
    return event
