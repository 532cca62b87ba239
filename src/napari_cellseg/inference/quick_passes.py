"""The size estimate's quick passes: the model on a central crop of the image at one scale.

:mod:`~napari_cellseg.inference.diameter` measures the objects' size and chooses the scale
from these passes. Each segments at most :data:`ESTIMATE_SIDE` px (at the pass's scale) of
the image's centre with its own strict U-Net thresholds (:func:`quick_params`), so that the
size is measured on confident, unsplit objects; a pass already run at a scale is reused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.events import CancelledError, Event, Notice, relay
from napari_cellseg.inference.object_size import central_crop, median_diameter
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams

__all__ = [
    "ESTIMATE_MAX_BOUNDARY",
    "ESTIMATE_MIN_PROBABILITY",
    "ESTIMATE_SIDE",
    "MAX_CROP_SIDE",
    "checked",
    "quick_params",
    "quick_pass",
    "quick_prediction",
    "too_small",
]


ESTIMATE_SIDE = 512
"""Edge (px at the pass's scale) of the central crop each estimation pass segments (384 was
faster at ×2 but lost 0.03 DSB AP there on 20 training-split images, session 17)."""
MAX_CROP_SIDE = 4096
"""...and at most this many px of the image (bounds the memory of the smallest scales)."""
ESTIMATE_MIN_PROBABILITY = 0.7
"""U-Net quick passes count a pixel as object only above this probability (or the run's own
threshold when higher): the size is measured on confident objects."""
ESTIMATE_MAX_BOUNDARY = 0.01
"""...and seed the watershed only where P(boundary) is below this (or the run's own
threshold when lower), so that whole objects are not split into pieces while measuring."""


def quick_params(params: PredictParams, card: ModelCard) -> PredictParams:
    """The parameters of the size estimate's quick passes: no rescaling, no augmentation and,
    for a U-Net, thresholds at least as strict as :data:`ESTIMATE_MIN_PROBABILITY` and
    :data:`ESTIMATE_MAX_BOUNDARY`.

    The estimate measures confident, unsplit objects whatever thresholds the run itself
    uses: lower ones (more, smaller objects) are for the final labels, and would let
    texture and fragments into the size measured. The thresholds also stay those the
    estimator was chosen and benchmarked with when a model's tuned thresholds change.

    >>> from napari_cellseg.params import PostprocessParams
    >>> card = ModelCard(family="unet", builder_args={}, input_channels=3)
    >>> run = PredictParams(post=PostprocessParams(prob_threshold=0.6, boundary_threshold=0.02))
    >>> post = quick_params(run, card).post
    >>> post.prob_threshold, post.boundary_threshold
    (0.7, 0.01)
    """
    quick = replace(
        params.resolved(card.post_params()), diameter="off", tta=1, keep_probabilities=False
    )
    if card.family != "unet" or quick.post is None:
        return quick
    post = quick.post
    return replace(
        quick,
        post=replace(
            post,
            prob_threshold=max(post.prob_threshold, ESTIMATE_MIN_PROBABILITY),
            boundary_threshold=min(post.boundary_threshold, ESTIMATE_MAX_BOUNDARY),
        ),
    )


def too_small(scale: float, plane_side: int, reference: float, largest: float) -> bool:
    """Whether a pass at ``scale`` would look for objects above ``largest`` px, or see too
    few of the model's diameter across the plane.

    >>> too_small(0.5, 512, 20.0, 500.0), too_small(0.03, 4096, 20.0, 500.0)
    (False, True)
    """
    return scale < reference / largest or plane_side * scale < 4 * reference


def quick_pass(*args: Any) -> Generator[Event, None, float | None]:
    """The median diameter (px of the image) of the objects of a central crop at a scale;
    the arguments are :func:`quick_prediction`'s."""
    prediction = yield from quick_prediction(*args)
    return median_diameter(prediction.labels)


def quick_prediction(
    image: Any,
    axes: str,
    model: str | Path | LoadedModel,
    quick: PredictParams,
    scale: float,
    should_stop: Callable[[], bool] | None,
    keep: dict[float, tuple[np.ndarray, str]] | None = None,
    seen: dict[float, Any] | None = None,
) -> Generator[Event, None, Any]:
    """The Prediction of a central crop (:data:`ESTIMATE_SIDE` px at ``scale``); its U-Net
    probabilities and device go into ``keep`` under ``scale`` when the crop is the image.
    ``seen`` (by scale) holds the passes already run: one at the same scale is returned."""
    from napari_cellseg.inference.planes import iter_predict_planes

    if seen is not None and scale in seen:
        return seen[scale]

    side = min(math.ceil(ESTIMATE_SIDE / scale), MAX_CROP_SIDE)
    crop, crop_axes = central_crop(image, axes, side)
    run = replace(quick, axes=crop_axes)
    prediction = yield from relay(
        iter_predict_planes(crop, model, run, should_stop=should_stop, scale=scale),
        _warnings_only,
    )
    whole = crop_axes == axes and crop.shape == np.shape(image)
    if keep is not None and whole and prediction.raw and isinstance(prediction.raw[0], np.ndarray):
        keep[scale] = (prediction.raw[0], prediction.device)
    if seen is not None:
        seen[scale] = prediction
    return prediction


def _warnings_only(event: Any) -> Any | None:
    return event if isinstance(event, Notice) and event.level == "warning" else None


def checked(event: Event, should_stop: Callable[[], bool] | None) -> Event:
    """``event``, to yield, unless ``should_stop()`` says stop: then :class:`CancelledError`."""
    if should_stop is not None and should_stop():
        raise CancelledError("segmentation was stopped")
    return event
