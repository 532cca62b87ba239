"""Invert for a fine-tune, chosen from the user's own images (``TrainParams.invert=None``).

A model trained on fluorescence (bright nuclei on a dark background) and fine-tuned on
brightfield or H&E images (dark nuclei on a bright background) starts nearer what it learned
when those images are inverted for it; measured with ``bench/hitl.py``, inverted fine-tunes
scored higher on both left-out DSB domains (``docs/benchmarks.md``, *Human in the loop*).
A fine-tune left to choose, the default, turns Invert on when both of these hold:

1. most of its training images read (:func:`~napari_cellseg.models.polarity.polarity`, as
   the network gets them) as a way round the base model hardly learned
   (:func:`~napari_cellseg.models.polarity.unlearned`; only cards that record their
   training images' polarity can say), and
2. the base model does not score higher (DSB AP, pixel Dice breaking ties) on the
   validation images as they are than inverted. A histogram can mislead where objects fill
   most of the frame (glands, EM cell interiors); the model's own score on the user's
   corrected image settles it.

The choice goes into the new model's card (its predictions invert by themselves) and into
the checkpoint, and one line says it either way. ``invert=True`` or ``False`` (``--invert``,
``--no-invert``) is never overridden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.normalise import with_invert
from napari_cellseg.models.polarity import most_images, polarity, unlearned
from napari_cellseg.training.validation import KEY_METRIC, epoch_score

__all__ = ["choose_invert", "inverted_card"]

Judge = Callable[[ModelCard], dict[str, float]]
"""The base model's validation metrics with a given card (its normalisation)."""


def inverted_card(card: ModelCard) -> ModelCard:
    """``card`` whose normalisation flips the intensities (or flips them back).

    >>> card = ModelCard.for_model("unet", {"encoder_name": "resnet18"})
    >>> once = inverted_card(card)
    >>> once.normalisation["invert"], inverted_card(once).normalisation["invert"]
    (True, False)
    """
    return replace(card, normalisation=dict(with_invert(card.normalisation, True)))


def choose_invert(
    base: ModelCard,
    pairs: Sequence[Any],
    judge: Judge | None = None,
    read: Callable[[Any, ModelCard], Any] | None = None,
) -> tuple[bool, str | None, dict[str, float] | None]:
    """Whether a fine-tune of ``base`` on ``pairs`` should invert, the line that says why,
    and the base's validation metrics the way it chose (the fine-tune's baseline).

    Parameters
    ----------
    base : ModelCard
        The base model's card; without recorded training polarity, or with a normalisation
        that cannot invert (``"none"``), the answer is ``(False, None, None)`` at once, before
        any image is read.
    pairs : sequence of TrainingPair
        The training images.
    judge : callable, optional
        The base model's validation metrics with a card (``None``: no validation images;
        the images' polarity decides alone).
    read : callable, optional
        ``read(pair, card)`` -> the network input ``(C, Y, X)``; default
        :func:`~napari_cellseg.training.pairs.load_input` (the image as training reads it).

    Returns
    -------
    invert : bool
    notice : str or None
        ``None`` when nothing about the images suggests inverting.
    metrics : dict or None
        ``judge``'s answer for the card as chosen; ``None`` when nothing was judged.
    """
    counts = base.learned_polarity()
    if counts is None or not pairs or base.normalisation.get("method") == "none":
        return False, None, None  # nothing recorded, or nothing to invert: not in [0, 1]
    if read is None:
        from napari_cellseg.training.pairs import load_input as read

    seen, subject = most_images([polarity(read(pair, base)) for pair in pairs])
    reading = unlearned(base, seen, counts, subject)
    if reading is None:
        return False, None, None
    if judge is None:
        return True, f"{reading}: Invert is on for this fine-tune, {_KEEPS}", None
    plain, flipped = judge(base), judge(inverted_card(base))
    scores = (
        f"the base model scores {_ap(flipped)} DSB AP on the validation images inverted, "
        f"{_ap(plain)} as they are"
    )
    if epoch_score(plain, []) > epoch_score(flipped, []):
        return False, f"{reading}, but {scores}: Invert stays off (--invert turns it on)", plain
    return True, f"{reading}, and {scores}: Invert is on for this fine-tune, {_KEEPS}", flipped


_KEEPS = "and the new model inverts by itself (--no-invert keeps it off)"


def _ap(metrics: dict[str, float]) -> str:
    return f"{float(metrics.get(KEY_METRIC, 0.0)):.3f}"
