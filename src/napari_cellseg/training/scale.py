"""Object size in training: measuring each image's object diameter and rescaling to a target.

Training normalises scale: every image's typical object size is measured once from its masks
(:func:`measure_diameter`, the median equivalent diameter of its objects) and every crop is
resampled so that its objects come out near the target diameter
(``TrainParams.object_diameter``), with a random log-uniform jitter around it
(:func:`draw_scale`). Validation images and their ground truth are rescaled the same way
(:func:`rescale_validation_pair`), so model selection sees what training saw. Images are
resampled with area averaging when shrinking and bilinear interpolation when enlarging;
instance labels with nearest neighbour (:func:`nearest_index`), so labels are never blended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_cellseg.labels.sizes import median_diameter as measure_diameter
from napari_cellseg.labels.sizes import nearest_index
from napari_cellseg.models.card import DIAMETER_RANGE, LEARNED_DIAMETER_SOURCE, ModelCard
from napari_cellseg.params import DEFAULT_TRAIN_DIAMETER

__all__ = [
    "CONSISTENT_SIZE_SPREAD",
    "card_diameter",
    "describe_source",
    "diameter_stats",
    "draw_scale",
    "images_diameter",
    "measure_diameter",
    "nearest_index",
    "rescale_validation_pair",
    "resize_channels",
    "scale_factor",
    "training_diameter",
]


def diameter_stats(diameters: Sequence[float | None]) -> dict[str, float | int | None]:
    """Median and 5th/95th percentiles of per-image diameters (images without objects left out).

    Returns
    -------
    dict
        ``n_images``, ``n_with_objects``, ``median``, ``p5`` and ``p95`` (px; ``None`` when
        no image has objects).

    Examples
    --------
    >>> diameter_stats([10.0, None, 30.0])["median"]
    20.0
    """
    known = np.array([d for d in diameters if d is not None], np.float64)
    out: dict[str, float | int | None] = {
        "n_images": len(diameters),
        "n_with_objects": int(known.size),
    }
    for key, q in (("median", 50), ("p5", 5), ("p95", 95)):
        out[key] = round(float(np.percentile(known, q)), 3) if known.size else None
    return out


def scale_factor(target: float | None, measured: float | None) -> float:
    """The zoom that brings objects of diameter ``measured`` to ``target`` (1: leave as is).

    ``target`` ``None`` or 0 (rescaling off) or ``measured`` ``None`` (no objects) give 1.
    """
    if not target or measured is None or measured <= 0:
        return 1.0
    return float(target) / float(measured)


def scale_mismatch(measured: float | None, target: float | None, limit: float = 4.0) -> str | None:
    """A warning when fine-tuning would zoom the user's objects by more than ``limit``×.

    ``measured`` is the median object diameter of the training images (px), ``target`` the
    diameter training rescales them to. Glands 150 px across, fine-tuned at a nuclei model's
    20 px, shrink 7.5×: a few specks per crop, from which such a model learns little.

    Examples
    --------
    >>> scale_mismatch(18.0, 20.0) is None
    True
    >>> message = scale_mismatch(150.0, 20.0)
    >>> "shrinks the training images 7.5×" in message, "150 px across" in message
    (True, True)
    >>> "enlarges the training images 5.0×" in scale_mismatch(4.0, 20.0)
    True
    """
    factor = scale_factor(target, measured)
    if 1.0 / limit <= factor <= limit:
        return None
    how = (
        f"shrinks the training images {1 / factor:.1f}×"
        if factor < 1
        else (f"enlarges the training images {factor:.1f}×")
    )
    return (
        f"fine-tuning {how} (their objects are about {measured:.0f} px across, the model's "
        f"{target:g} px): a model made for objects of another size learns little from them; "
        "cellseg train --object-diameter sets the training scale (0 = the images' own)"
    )


def draw_scale(rng: np.random.Generator, factor: float, jitter: float) -> float:
    """``factor`` times a log-uniform random factor in ``[1 / (1 + jitter), 1 + jitter]``."""
    if jitter <= 0:
        return factor
    spread = math.log1p(jitter)
    return factor * math.exp(float(rng.uniform(-spread, spread)))


def resize_channels(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample float ``(C, H, W)`` to ``(C, *size)``: area when shrinking, else bilinear."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]
    shrinking = size[0] <= image.shape[-2] and size[1] <= image.shape[-1]
    if shrinking:
        out = torch.nn.functional.interpolate(tensor, size=size, mode="area")
    else:
        out = torch.nn.functional.interpolate(
            tensor, size=size, mode="bilinear", align_corners=False
        )
    return out[0].numpy()


def rescale_validation_pair(
    image: np.ndarray, axes: str, truth: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom a raw image (any axes with ``Y`` and ``X``) and its ground truth by ``factor``.

    The image keeps its dtype (integers rounded and clipped), so a model normalising by the
    dtype's range sees the same values; the ground truth is resampled by nearest neighbour.

    Parameters
    ----------
    image : numpy.ndarray
        The image as read from disk, with axes ``axes`` (e.g. ``YX``, ``YXS``, ``CYX``).
    axes : str
        Its axes; the ``Y`` and ``X`` axes are resampled.
    truth : numpy.ndarray
        ``(Y, X)`` instance labels of the image.
    factor : float
        Zoom (2: twice as large); 1 returns the inputs unchanged.

    Returns
    -------
    image, truth : numpy.ndarray
        Both ``round(Y * factor) x round(X * factor)`` (at least 1 pixel).
    """
    if factor == 1.0:
        return image, truth
    y, x = axes.index("Y"), axes.index("X")
    height, width = image.shape[y], image.shape[x]
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    rest = [i for i in range(image.ndim) if i not in (y, x)]
    moved = np.transpose(image, (*rest, y, x))
    flat = moved.reshape(-1, height, width).astype(np.float32)
    resized = resize_channels(flat, size).reshape(*moved.shape[:-2], *size)
    if np.issubdtype(image.dtype, np.integer):
        limits = np.iinfo(image.dtype)
        resized = np.clip(np.rint(resized), limits.min, limits.max)
    elif image.dtype == bool:
        resized = resized >= 0.5
    out = np.transpose(resized.astype(image.dtype), np.argsort((*rest, y, x)))
    rows, cols = nearest_index(height, size[0]), nearest_index(width, size[1])
    return np.ascontiguousarray(out), truth[rows[:, None], cols[None, :]]


def describe_source(target: float | None, jitter: float, measured: float | None) -> str:
    """The card's ``object_diameter_source`` line for a training run.

    >>> describe_source(20.0, 0.2, 18.4)
    'training masks: median equivalent diameter per image, rescaled to 20 px (jitter 0.2)'
    >>> describe_source(0.0, 0.2, 18.4)
    'training masks: median over images of the median equivalent diameter, not rescaled'
    """
    if target:
        return (
            f"{LEARNED_DIAMETER_SOURCE}: median equivalent diameter per image, rescaled to "
            f"{target:g} px (jitter {jitter:g})"
        )
    if measured is None:
        return ""
    return (
        f"{LEARNED_DIAMETER_SOURCE}: median over images of the median equivalent diameter, "
        "not rescaled"
    )


def training_diameter(requested: float | None, card: ModelCard, *, fine_tuning: bool) -> float:
    """The object diameter a run trains at (``TrainParams.object_diameter`` resolved).

    ``None``: the base model's (:meth:`~napari_cellseg.models.card.ModelCard.reference_diameter`)
    when fine-tuning, else :data:`~napari_cellseg.params.DEFAULT_TRAIN_DIAMETER`; a number
    (0 = off) is kept.

    >>> from napari_cellseg.models.card import ModelCard
    >>> card = ModelCard.for_model("unet", {"encoder_name": "resnet18"}, object_diameter=30)
    >>> training_diameter(None, card, fine_tuning=True)
    30.0
    >>> training_diameter(None, card, fine_tuning=False)
    20.0
    >>> training_diameter(0, card, fine_tuning=True)  # off
    0.0
    """
    if requested is not None:
        return float(requested)
    return card.reference_diameter() if fine_tuning else DEFAULT_TRAIN_DIAMETER


def card_diameter(object_size: dict[str, Any]) -> tuple[float | None, str]:
    """``object_diameter`` and ``object_diameter_source`` for the card of a training run.

    Parameters
    ----------
    object_size : dict
        The run's ``provenance["object_size"]``: ``object_diameter`` (target, 0 = off),
        ``scale_jitter`` and ``train_diameters`` (:func:`diameter_stats`).

    Returns
    -------
    diameter : float or None
        The target; with rescaling off, the training images' median diameter (``None`` when
        unknown or outside :data:`~napari_cellseg.models.card.DIAMETER_RANGE`).
    source : str
        How it was obtained (:func:`describe_source`).
    """
    target, jitter = object_size["object_diameter"], object_size["scale_jitter"]
    measured = object_size["train_diameters"]["median"]
    if target:
        return float(target), describe_source(target, jitter, measured)
    usable = images_diameter(object_size)
    if usable is None:
        return None, ""
    return usable, describe_source(0.0, jitter, usable)


CONSISTENT_SIZE_SPREAD = 4.0
"""Most a fine-tune's training images' 95th-percentile object diameter may exceed their 5th
percentile by (as a factor) for the images' median to become the card's default diameter."""


def images_diameter(object_size: dict[str, Any]) -> float | None:
    """The training images' median object diameter (px, at their own scale), when usable.

    A fine-tuned card's ``default_diameter``: ``None`` when no object was measured, the
    median lies outside :data:`~napari_cellseg.models.card.DIAMETER_RANGE`, or the images
    disagree on object size (their 95th percentile diameter more than
    :data:`CONSISTENT_SIZE_SPREAD` times their 5th: a mixed collection such as DSB 2018, for
    which no single default fits and ``auto`` is the better default).

    >>> images_diameter({"train_diameters": {"median": 150.2}})
    150.2
    >>> images_diameter({"train_diameters": {"median": None}}) is None
    True
    >>> images_diameter({"train_diameters": {"median": 21.0, "p5": 17.0, "p95": 26.0}})
    21.0
    >>> images_diameter({"train_diameters": {"median": 18.4, "p5": 9.6, "p95": 49.7}}) is None
    True
    """
    stats = object_size["train_diameters"]
    measured = stats["median"]
    low, high = stats.get("p5"), stats.get("p95")
    if low and high and high > CONSISTENT_SIZE_SPREAD * low:
        return None
    lo, hi = DIAMETER_RANGE
    return float(measured) if measured is not None and lo <= measured <= hi else None
