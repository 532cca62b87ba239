"""From ``PredictParams.diameter`` to the scale a run uses: ``iter_choose_scale``.

``None`` means the model's default: its card's ``default_diameter`` when it has one (a
fine-tune: the median object diameter of the images it was fine-tuned on, as Cellpose's
``diam_labels``), else ``"auto"`` when its card records ``object_diameter``, else ``"off"``
(no rescaling, as before object sizes existed). A number is pixels; a
micrometre value is turned into pixels with the image's pixel size. ``"auto"`` estimates
the diameter from the image (:func:`iter_estimate_diameter`) with quick passes of the model
on a central crop (:mod:`~napari_cellseg.inference.quick_passes`), measuring the median
equivalent diameter of whole objects; for a model
whose card learned its diameter from training masks, :func:`iter_refine_scale` then moves
the scale by factors of √2 while the model grows surer of its objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.events import Event, Notice, Progress
from napari_cellseg.inference.object_size import (
    fixed_scale,
    median_diameter,
    model_card,
    object_confidence,
    plane_shape,
    scale_action,
    scale_for,
)
from napari_cellseg.inference.quick_passes import (
    MAX_CROP_SIDE,
    checked,
    quick_params,
    quick_pass,
    quick_prediction,
    too_small,
)
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import DIAMETER_RANGE, PredictParams

__all__ = [
    "MAX_PASSES",
    "iter_choose_scale",
    "iter_estimate_diameter",
    "iter_refine_scale",
]

MAX_PASSES = 6
"""Estimation passes at most (the native scale, then halving it: objects up to 32x larger)."""
MAX_SMALL_PASSES = 3
"""Passes at most for small objects: the native scale, the implied one, one refinement."""
GOOD_RATIO = 1.25
"""A pass whose objects are within this factor of the model's diameter ends the search."""
REFINE_STEP = math.sqrt(2.0)
"""Factor between the scales the refinement compares."""
MAX_REFINE_MOVES = 4
"""Refinement moves at most (the estimate's scale ×/÷ 4 at most)."""
REFINE_SPAN = 2.0
"""A refinement pass counts only if its objects look within this factor of the model's size."""
REFINE_BOTH_SIDES = True
"""The refinement's first move compares both neighbours (×√2 and ×1/√2); False: the larger
scale first, and the smaller only when the larger is no surer. False saved a pass on some
images but lost DSB AP at ×2 (0.543 → 0.506 on 20 training-split images: a large-nucleus
image went up instead of down), so both are compared (docs/benchmarks.md, session 17)."""
SNAP = 1.0
"""The refinement starts at a scale the size estimate already ran when one lies within this
factor of ``reference / diameter`` (1.0: only the same scale), reusing that pass. 1.05 was
8 % faster and 0.01 DSB AP lower at ×1 and ×3 on 20 training-split images: not taken."""
ESTIMATING, CHOOSING = "estimating the object size", "choosing the scale"
"""The messages of the ``"diameter"`` progress events: measuring, then refining."""


def iter_choose_scale(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams,
    *,
    pixel_size_um: float | Sequence[float] | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep: dict[float, tuple[np.ndarray, str]] | None = None,
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
    keep : dict, optional
        Filled with ``{scale: (probabilities, device)}`` for each quick pass whose crop was
        the whole (single-plane) image: the network output a run at that scale computes
        again, which :func:`~napari_cellseg.inference.api.iter_predict` reuses, and the
        device that computed it.

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
    card = model_card(model)
    fixed = fixed_scale(card, params, pixel_size_um)
    if fixed is not None:
        diameter, scale, message = fixed
        if message:
            yield checked(Notice(message), should_stop)
        return diameter, scale
    reference = card.reference_diameter()
    start = scale_for(reference, card.default_diameter) if card.default_diameter else 1.0
    seen: dict[float, Any] = {}  # the quick passes' Predictions by scale, for reuse
    diameter = yield from iter_estimate_diameter(
        image, model, params, reference, start=start, should_stop=should_stop, keep=keep,
        seen=seen,
    )  # fmt: skip
    if diameter is None:
        yield checked(
            Notice(
                "no objects found to estimate the object diameter: not rescaled",
                level="warning",
            ),
            should_stop,
        )
        return None, 1.0
    measured, how = diameter, ""
    if card.learned_diameter():
        scale = yield from iter_refine_scale(
            image, model, params, reference, diameter, should_stop=should_stop, keep=keep,
            seen=seen,
        )  # fmt: skip
        if abs(math.log(scale * diameter / reference)) > 1e-6:
            diameter = reference / scale
            how = f" (objects measured {measured:.0f} px; the model is surest at {diameter:.0f})"
    scale = scale_for(reference, diameter)
    yield checked(
        Notice(f"estimated object diameter {diameter:.0f} px{how} \u2192 {scale_action(scale)}"),
        should_stop,
    )
    return diameter, scale


def iter_estimate_diameter(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams,
    reference: float,
    *,
    start: float = 1.0,
    should_stop: Callable[[], bool] | None = None,
    keep: dict[float, tuple[np.ndarray, str]] | None = None,
    seen: dict[float, Any] | None = None,
) -> Generator[Event, None, float | None]:
    """Estimate the median object diameter (px) of ``image`` with quick passes of the model.

    Each pass (:mod:`~napari_cellseg.inference.quick_passes`) segments a central crop of the
    middle plane (at most ``ESTIMATE_SIDE`` px at the pass's scale) and measures the median
    equivalent diameter of its whole objects
    (:func:`~napari_cellseg.inference.object_size.median_diameter`). The first pass
    is at the native scale, or at ``start`` (a fine-tuned model: the scale of the images it
    was fine-tuned on, where its objects are expected); "native" below means that scale.

    - Objects smaller than ``reference / GOOD_RATIO``: a pass at the implied scale
      ``reference / estimate``, and one more while still off by more than
      :data:`GOOD_RATIO`; the pass that saw objects nearest ``reference`` gives the estimate
      when it saw them within :data:`GOOD_RATIO` of it. Otherwise the small objects were
      not confirmed (texture, specks) and the halving below looks for larger ones first.
    - Otherwise the objects may be whole, or fragments of larger ones (a model shown
      objects far larger than it was trained on cuts them into pieces of about its own
      size). The scale is halved while the objects still look at least
      ``reference / GOOD_RATIO`` across (:data:`MAX_PASSES` in all); the last such pass
      saw them whole and gives the estimate.

    - No object at the native scale: objects far larger than the model knows may not be
      seen at all (nor whole in the crop), so the scale is halved until a pass finds some
      (:data:`MAX_PASSES` in all); from there on as for large objects (above).

    Returns ``None`` when no pass found an object.
    """
    axes = params.axes or ""
    quick = quick_params(params, model_card(model))
    low, (smallest, largest) = reference / GOOD_RATIO, DIAMETER_RANGE
    plane_side = min(*plane_shape(image, axes), MAX_CROP_SIDE)

    def measure(scale: float, number: int) -> Generator[Event, None, float | None]:
        yield checked(Progress("diameter", number, MAX_PASSES, ESTIMATING), should_stop)
        return (yield from quick_pass(image, axes, model, quick, scale, should_stop, keep, seen))

    estimate = yield from measure(start, 0)
    passes, first_scale = 1, start
    while estimate is None:  # nothing at the native scale: objects too large to be seen?
        first_scale /= 2
        if not passes < MAX_PASSES or too_small(first_scale, plane_side, reference, largest):
            return None
        estimate = yield from measure(first_scale, passes)
        passes += 1
    fallback: float | None = None
    if first_scale < start:  # found only once shrunk: large objects; shrink while still large
        best_estimate, scale = estimate, first_scale
    elif estimate * start < low:  # objects look small: enlarge to the implied scale, refine once
        best = (abs(math.log(estimate * start / reference)), estimate)
        scale = start
        while passes < MAX_SMALL_PASSES:
            following = scale_for(reference, min(max(estimate, smallest), largest))
            if abs(math.log(following / scale)) <= math.log(1.1):
                break
            scale = following
            found = yield from measure(scale, passes)
            passes += 1
            if found is None:
                break
            estimate = found
            error = abs(math.log(estimate * scale / reference))
            if error < best[0]:
                best = (error, estimate)
            if error <= math.log(GOOD_RATIO):
                break
        if best[0] <= math.log(GOOD_RATIO):  # a pass at the implied scale confirmed it
            yield checked(Progress("diameter", MAX_PASSES, MAX_PASSES, ESTIMATING), should_stop)
            return best[1]
        # Unconfirmed: the small "objects" were texture or fragments (a model shown objects
        # far larger than it knows may find specks). Look for larger objects by halving the
        # scale as below; if none is found, keep the nearest small estimate.
        fallback = best[1]
        best_estimate, scale = None, start
    else:
        best_estimate, scale = estimate, start
    # objects look model-sized or larger, maybe as fragments of larger ones: halve the
    # scale while they still look at least that large; the last such pass saw them whole
    while passes < MAX_PASSES:
        scale /= 2
        if too_small(scale, plane_side, reference, largest):
            break
        found = yield from measure(scale, passes)
        passes += 1
        if found is None or found * scale < low:
            break
        best_estimate = found
    yield checked(Progress("diameter", MAX_PASSES, MAX_PASSES, ESTIMATING), should_stop)
    return best_estimate if best_estimate is not None else fallback


def iter_refine_scale(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams,
    reference: float,
    diameter: float,
    *,
    should_stop: Callable[[], bool] | None = None,
    keep: dict[float, tuple[np.ndarray, str]] | None = None,
    seen: dict[float, Any] | None = None,
) -> Generator[Event, None, float]:
    """The scale near ``reference / diameter`` at which the model is surest of its objects.

    A model trained with its objects near ``reference`` px is most confident (highest
    :func:`object_confidence`) when shown objects near that size; a size measured from a
    quick pass can be far off (texture taken for small nuclei, large nuclei cut into
    pieces). Starting at ``reference / diameter``, a quick pass of the central crop at
    ×√2 and ×1/√2 of the scale is compared with the current one; the scale moves to the
    better neighbour while the confidence rises, then on in that direction
    (:data:`MAX_REFINE_MOVES` at most). A scale counts only where its objects look within
    :data:`REFINE_SPAN` of ``reference`` and inside the diameter range.

    Only U-Net-style models (probability maps) are refined; for others the scale of
    ``diameter`` is returned unchanged. Chosen on 2 x 80 training-split DSB 2018 images
    (never the validation split), where it lifted the demo U-Net's DSB AP from 0.505 / 0.486
    (the measured size alone) to 0.530 / 0.508; docs/benchmarks.md has the held-out figures.
    """
    start = reference / diameter
    card = model_card(model)
    if card.family != "unet":
        return start
    seen = {} if seen is None else seen
    near = [ran for ran in seen if abs(math.log(ran / start)) <= math.log(SNAP)]
    if near:  # the size estimate ran (nearly) this scale already: start there
        start = min(near, key=lambda ran: abs(math.log(ran / start)))
    axes = params.axes or ""
    quick = quick_params(params, card)
    smallest, largest = DIAMETER_RANGE
    plane_side = min(*plane_shape(image, axes), MAX_CROP_SIDE)
    total = 1 + 2 * MAX_REFINE_MOVES

    def confidence(scale: float, number: int) -> Generator[Event, None, float | None]:
        yield checked(Progress("diameter", number, total, CHOOSING), should_stop)
        prediction = yield from quick_prediction(
            image, axes, model, quick, scale, should_stop, keep, seen
        )
        size = median_diameter(prediction.labels)
        if size is None or abs(math.log(size * scale / reference)) >= math.log(REFINE_SPAN):
            return None
        raw = prediction.raw[0] if prediction.raw else None
        if not isinstance(raw, np.ndarray):
            return None
        return object_confidence(raw, card.outputs)

    def allowed(scale: float) -> bool:
        return reference / largest <= scale <= reference / smallest and not too_small(
            scale, plane_side, reference, largest
        )

    current = yield from confidence(start, 0)
    scale, number, direction = start, 1, None
    if current is None:
        return start
    for _ in range(MAX_REFINE_MOVES):
        best: tuple[float, float] | None = None
        for factor in [direction] if direction else [REFINE_STEP, 1 / REFINE_STEP]:
            if not allowed(scale * factor):
                continue
            found = yield from confidence(scale * factor, number)
            number += 1
            if found is not None and found > current and (best is None or found > best[0]):
                best = (found, factor)
                if not REFINE_BOTH_SIDES:
                    break
        if best is None:
            break
        current, direction = best
        scale *= direction
    yield checked(Progress("diameter", total, total, CHOOSING), should_stop)
    return scale
