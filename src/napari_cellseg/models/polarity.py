"""Which way round an image's objects are, and a hint when a model learned the other way.

A model trained on fluorescence (bright nuclei on a dark background) sees a brightfield or
H&E image (dark nuclei on a bright background) the wrong way round and cuts its background
into "objects"; :attr:`PredictParams.invert <napari_cellseg.params.PredictParams>` fixes
that, but only a user who thinks of it ticks it. So training writes each training image's
polarity into the model card's data manifest, and a prediction compares the image's own
polarity with what the model learned: when the model saw (almost) none of its kind it says
so, and which way to set Invert.

The polarity is read from the intensities alone, the way the network gets them (channels
mapped, normalised, inverted as asked): the objects are the minority of pixels, so the
intensities' long tail points their way, and the mean lies on the tail's side of the median
(the sign of Pearson's second skewness coefficient). No masks are needed, so the same test
serves training images and new ones. It is a statement about an image's histogram, not
about objects: images whose objects fill most of the frame (glands, EM cell interiors) can
read the other way, which is why a hint compares an image with the model's own training
images read the same way, never with a fixed rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.normalise import to_model_input, with_invert

UNCLEAR = 0.01
"""``|mean − median|`` below this fraction of the 1–99 % percentile range: ``"unclear"``."""

RARE = 0.05
"""A polarity under this share of a model's training images (clear ones) was not learned."""

MAX_PIXELS = 512 * 512
"""Larger images are read on a regular subsample of about this many pixels."""

DESCRIBED = {
    "bright": "bright objects on a dark background",
    "dark": "dark objects on a bright background",
}


def polarity(image: np.ndarray) -> str:
    """``"bright"``, ``"dark"`` or ``"unclear"``: which way an image's intensities skew.

    Parameters
    ----------
    image : numpy.ndarray
        A network input, ``(C, Y, X)`` (channels averaged) or ``(Y, X)``.

    Examples
    --------
    >>> dots = np.zeros((64, 64), np.float32)
    >>> dots[10:18, 10:18] = dots[40:48, 30:38] = dots[20:28, 50:58] = 1.0  # 5 %
    >>> polarity(dots), polarity(1.0 - dots), polarity(np.ones((8, 8)))
    ('bright', 'dark', 'unclear')
    """
    grey = np.asarray(image, np.float32)
    grey = grey.mean(axis=0) if grey.ndim == 3 else grey
    step = max(1, int(np.ceil(np.sqrt(grey.size / MAX_PIXELS))))
    grey = grey[::step, ::step]
    low, high = np.percentile(grey, [1, 99])
    spread = float(high - low) or float(grey.max() - grey.min())
    if spread <= 0:
        return "unclear"
    shift = (float(grey.mean()) - float(np.median(grey))) / spread
    if abs(shift) < UNCLEAR:
        return "unclear"
    return "bright" if shift > 0 else "dark"


def with_polarity(
    manifest: Sequence[dict[str, Any]], images: Iterable[np.ndarray], role: str = "train"
) -> list[dict[str, Any]]:
    """``manifest`` with each ``role`` entry's image polarity added, in order.

    >>> dots = np.zeros((16, 16), np.float32); dots[4:6, 4:6] = 1.0
    >>> with_polarity([{"name": "a", "role": "train"}, {"name": "b", "role": "validation"}],
    ...               [dots])
    [{'name': 'a', 'role': 'train', 'polarity': 'bright'}, {'name': 'b', 'role': 'validation'}]
    """
    images = iter(images)
    return [
        {**entry, "polarity": polarity(next(images))} if entry.get("role") == role else entry
        for entry in manifest
    ]


def unlearned(
    card: ModelCard,
    seen: str | None,
    counts: dict[str, int] | None = None,
    subject: str = "this image looks",
) -> str | None:
    """What the model makes of a polarity ``seen`` it hardly learned (under :data:`RARE` of
    its clear training images), as the first half of a sentence; ``None`` when it learned
    ``seen``, ``seen`` is not clear, or the card does not say. ``subject`` begins it.

    >>> card = ModelCard.for_model("unet", {"encoder_name": "resnet18"}, provenance={
    ...     "data_manifest": [{"role": "train", "polarity": "bright"}] * 4})
    >>> print(unlearned(card, "dark"))  # doctest: +NORMALIZE_WHITESPACE
    this image looks like dark objects on a bright background to the model, which learned
    bright objects on a dark background (4 of its 4 training images)
    >>> unlearned(card, "bright") is None, unlearned(card, "unclear") is None
    (True, True)
    """
    counts = counts if counts is not None else card.learned_polarity()
    clear = (counts or {}).get("bright", 0) + (counts or {}).get("dark", 0)
    if seen not in DESCRIBED or not clear or counts[seen] >= RARE * clear:
        return None
    other = "dark" if seen == "bright" else "bright"
    return (
        f"{subject} like {DESCRIBED[seen]} to the model, which learned "
        f"{DESCRIBED[other]} ({counts[other]} of its {clear} training images)"
    )


def polarity_hint(
    card: ModelCard,
    seen: str,
    inverted: bool,
    counts: dict[str, int] | None = None,
    subject: str = "this image looks",
    advice: str = "if its objects come out wrong,",
) -> str | None:
    """One line when an image's polarity ``seen`` (as the network gets it) is one the model
    hardly learned (:func:`unlearned`); ``None`` otherwise. ``inverted``: the user's Invert
    is on; ``advice`` comes before the fix.

    >>> card = ModelCard.for_model("unet", {"encoder_name": "resnet18"}, provenance={
    ...     "data_manifest": [{"role": "train", "polarity": "bright"}] * 4})
    >>> print(polarity_hint(card, "dark", inverted=False))  # doctest: +NORMALIZE_WHITESPACE
    this image looks like dark objects on a bright background to the model, which learned
    bright objects on a dark background (4 of its 4 training images): if its objects come
    out wrong, turn Invert on (--invert)
    >>> polarity_hint(card, "bright", inverted=False) is None
    True
    """
    reading = unlearned(card, seen, counts, subject)
    if reading is None:
        return None
    fix = "turn Invert off (no --invert)" if inverted else "turn Invert on (--invert)"
    return f"{reading}: {advice} {fix}"


def most_images(ways: Sequence[str | None]) -> tuple[str | None, str]:
    """The polarity of more than half of ``ways`` (``None`` if none has a majority) and the
    subject of a sentence about them.

    >>> most_images(["dark", "dark", "bright"])
    ('dark', '2 of the 3 training images look')
    >>> most_images(["dark", "bright"])[0] is None
    True
    """
    for seen in DESCRIBED:
        if ways and ways.count(seen) * 2 > len(ways):
            return seen, f"{ways.count(seen)} of the {len(ways)} training images look"
    return None, ""


def fine_tune_hint(
    base: ModelCard, manifest: Sequence[dict[str, Any]], inverted: bool
) -> str | None:
    """:func:`polarity_hint` for a fine-tune: when most of its training images (``manifest``,
    read by :func:`with_polarity`) are of a polarity the base model hardly learned.

    >>> base = ModelCard.for_model("unet", {"encoder_name": "resnet18"}, provenance={
    ...     "data_manifest": [{"role": "train", "polarity": "bright"}] * 9})
    >>> mine = [{"role": "train", "polarity": "dark"}] * 2 + [{"role": "validation"}]
    >>> print(fine_tune_hint(base, mine, inverted=False))  # doctest: +NORMALIZE_WHITESPACE
    2 of the 2 training images look like dark objects on a bright background to the model,
    which learned bright objects on a dark background (9 of its 9 training images): the
    fine-tune starts nearer what it learned if you turn Invert on (--invert)
    """
    seen, subject = most_images([e.get("polarity") for e in manifest if e.get("role") == "train"])
    advice = "the fine-tune starts nearer what it learned if you"
    return polarity_hint(base, seen, inverted, subject=subject, advice=advice) if seen else None


def image_hint(
    plane: np.ndarray, card: ModelCard, *, invert: bool = False, channels=None
) -> str | None:
    """:func:`polarity_hint` for one image plane ``(Y, X[, C])``, read as the network gets
    it (a regular subsample of large planes); ``None`` at once when the card records no
    training polarity."""
    counts = card.learned_polarity()
    if counts is None:
        return None
    plane = np.asarray(plane)
    step = max(1, int(np.ceil(np.sqrt(plane.shape[0] * plane.shape[1] / MAX_PIXELS))))
    x = to_model_input(
        plane[::step, ::step],
        input_channels=card.input_channels,
        channel_handling=card.channel_handling,
        normalisation=with_invert(card.normalisation, invert),
        channels=channels,
    )
    return polarity_hint(card, polarity(np.asarray(x)), invert, counts)


__all__ = [
    "DESCRIBED",
    "RARE",
    "UNCLEAR",
    "fine_tune_hint",
    "image_hint",
    "most_images",
    "polarity",
    "polarity_hint",
    "unlearned",
    "with_polarity",
]
