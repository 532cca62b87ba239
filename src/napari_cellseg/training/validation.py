"""Scoring a model on whole validation images, and judging an epoch against the best and the base.

Validation images are first brought to the training scale (:func:`at_training_scale`), so
model selection sees objects at the size training showed the model. An image with a region
mask (:mod:`napari_cellseg.training.regions`) is scored only inside it: the ground truth and
the prediction are both set to 0 outside, so unchecked pixels neither match nor miss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_cellseg.inference.planes import predict_planes
from napari_cellseg.labels.metrics import evaluate_pair, summarise
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams
from napari_cellseg.training.regions import clip_to_region
from napari_cellseg.training.scale import (
    measure_diameter,
    nearest_index,
    rescale_validation_pair,
    scale_factor,
)


@dataclass(frozen=True)
class ValidationImage:
    """A raw image (as read from disk) with its axes and ground-truth instances.

    ``region`` (bool ``(Y, X)``, optional) is the part whose ground truth was checked; only
    it is scored (:meth:`scored`).
    """

    name: str
    image: np.ndarray
    axes: str
    truth: np.ndarray
    region: np.ndarray | None = None

    def scored(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ground truth and predicted ``labels`` to score: both clipped to the region."""
        return clip_to_region(self.truth, self.region), clip_to_region(labels, self.region)


def read_validation_images(pairs: Sequence) -> list[ValidationImage]:
    """Read ``TrainingPair``s as raw images, so validation runs exactly like inference."""
    from napari_cellseg.io.images import read_image, read_labels
    from napari_cellseg.training.pairs import load_region

    out = []
    for pair in pairs:
        image = read_image(pair.image_path)
        truth = read_labels(pair.mask_path)
        region = load_region(pair, truth.shape[-2:])
        out.append(ValidationImage(pair.name, image.data, image.axes, truth, region))
    return out


def at_training_scale(
    images: Sequence[ValidationImage], object_diameter: float | None
) -> tuple[list[ValidationImage], list[float | None]]:
    """Validation images and their ground truth rescaled to the training scale.

    Each image's object diameter is measured from its ground truth
    (:func:`~napari_cellseg.training.scale.measure_diameter`) and the image zoomed by
    ``object_diameter / measured`` (ground truth by nearest neighbour), as training crops
    are (without jitter). Images without objects, or ``object_diameter`` ``None`` or 0,
    are left as they are.

    Returns
    -------
    images : list of ValidationImage
        The rescaled images (same names).
    diameters : list of (float or None)
        Each image's measured diameter at its own scale (px).
    """
    out, diameters = [], []
    for item in images:
        measured = measure_diameter(item.truth)
        diameters.append(measured)
        factor = scale_factor(object_diameter, measured)
        if factor == 1.0:
            out.append(item)
            continue
        image, truth = rescale_validation_pair(item.image, item.axes, item.truth, factor)
        region = item.region
        if region is not None:  # resampled by nearest neighbour, as the ground truth
            rows = nearest_index(region.shape[0], truth.shape[-2])
            cols = nearest_index(region.shape[1], truth.shape[-1])
            region = region[rows[:, None], cols[None, :]]
        out.append(ValidationImage(item.name, image, item.axes, truth, region))
    return out, diameters


def evaluate_model(
    model: torch.nn.Module,
    card: ModelCard,
    images: Sequence[ValidationImage],
    *,
    device: str | torch.device = "cpu",
    tile_size: int = 512,
) -> dict[str, float]:
    """Mean metrics (``dsb_ap``, ``f1@0.5`` ...) of ``model`` over ``images``.

    Post-processing uses the card's own thresholds (:meth:`ModelCard.post_params`), as
    inference does. The model is put in eval mode; the caller switches it back to training.
    """
    if not images:
        return {}
    loaded = LoadedModel(model=model, card=card, path=Path("<training>"), source="training")
    per_image = []
    for item in images:
        params = PredictParams(
            device=str(device),
            tile_size=tile_size,
            overlap=None,  # the default for this tile size
            axes=item.axes,  # post unset: the model's own thresholds, as in use
            backend="torch",  # the weights change every epoch: no ONNX export each time
        )
        prediction = predict_planes(item.image, loaded, params)  # never block by block
        per_image.append(evaluate_pair(*item.scored(prediction.labels)))
    return summarise(per_image)


KEY_METRIC = "dsb_ap"
"""The validation metric that chooses the best epoch."""

WEAK_VALIDATION = 0.05
"""A fine-tune whose kept epoch scores below this DSB AP on the validation images is
returned with a warning: the images gave little evidence that it beats its base."""


MIN_VALIDATION_OBJECTS = 20
"""Fewer objects than this in the validation images make the best-epoch choice a lottery:
in the GlaS and H&E fine-tuning benchmarks the validation images that let a worse model
through, or scored every epoch 0, held 4 and 3 objects (docs/benchmarks.md)."""


def count_objects(images: Sequence[ValidationImage]) -> int:
    """The objects the validation scores are made of (ground truth, inside each region).

    >>> truth = np.array([[0, 1, 1], [2, 0, 3]])
    >>> count_objects([ValidationImage("a", truth, "YX", truth)])
    3
    >>> region = np.array([[True, True, True], [False, False, False]])
    >>> count_objects([ValidationImage("a", truth, "YX", truth, region)])
    1
    """
    return sum(
        int(np.count_nonzero(np.unique(clip_to_region(item.truth, item.region)))) for item in images
    )


def few_objects(count: int, images: int) -> str | None:
    """A warning when the validation images hold too few objects to judge epochs by.

    >>> few_objects(4, 1).split(":")[0]
    'the validation image holds only 4 objects'
    >>> "about 25 %" in few_objects(4, 1)
    True
    >>> few_objects(0, 2).split(":")[0]
    'the 2 validation images hold no objects'
    >>> few_objects(120, 2) is None
    True
    """
    if images == 0 or count >= MIN_VALIDATION_OBJECTS:
        return None
    what = "validation image holds" if images == 1 else f"{images} validation images hold"
    advice = (
        f"an epoch replaces the base only if it also keeps the base's pixel Dice; validate on "
        f"images with {MIN_VALIDATION_OBJECTS} or more objects in all, and check the result "
        "on others"
    )
    if count == 0:
        return f"the {what} no objects: no epoch can be judged on them; {advice}"
    return (
        f"the {what} only {count} objects: each is about {100 / count:.0f} % of the score, "
        f"so a lucky epoch can look better than the base; {advice}"
    )


def beats_base(
    metrics: dict[str, float], baseline: dict[str, float] | None, few: bool = False
) -> bool:
    """Whether an epoch may replace the base model: a strictly higher DSB AP on the
    validation images (the pixel Dice that breaks ties between epochs does not count
    against the base: a model that finds no more objects is not better). With ``few``
    validation objects (fewer than ``MIN_VALIDATION_OBJECTS``) one object moves the DSB AP
    by several points, so the epoch must also keep the base's pixel Dice: it may not win
    on a lucky object while it finds less of the foreground.

    >>> beats_base({"dsb_ap": 0.0, "pixel_dice": 0.4}, {"dsb_ap": 0.0, "pixel_dice": 0.1})
    False
    >>> beats_base({"dsb_ap": 0.2}, {"dsb_ap": 0.1}), beats_base({"dsb_ap": 0.2}, None)
    (True, True)
    >>> won = {"dsb_ap": 0.18, "pixel_dice": 0.30}
    >>> beats_base(won, {"dsb_ap": 0.03, "pixel_dice": 0.50}, few=True)
    False
    >>> beats_base(won, {"dsb_ap": 0.03, "pixel_dice": 0.50}, few=False)
    True
    """
    if baseline is None or KEY_METRIC not in metrics or KEY_METRIC not in baseline:
        return True
    dice_lost = (
        few
        and "pixel_dice" in metrics
        and "pixel_dice" in baseline
        and float(metrics["pixel_dice"]) < float(baseline["pixel_dice"])
    )
    return not dice_lost and float(metrics[KEY_METRIC]) > float(baseline[KEY_METRIC])


def weak_evidence(best: dict[str, float], baseline: dict[str, float] | None) -> str | None:
    """A warning when the fine-tuned model beat its base only at a very low score.

    >>> weak_evidence({"dsb_ap": 0.014}, {"dsb_ap": 0.0})[:60]
    'the fine-tuned model beat the base on the validation images '
    >>> weak_evidence({"dsb_ap": 0.3}, {"dsb_ap": 0.1}) is None
    True
    """
    if baseline is None or KEY_METRIC not in best or KEY_METRIC not in baseline:
        return None
    ap, base = float(best[KEY_METRIC]), float(baseline[KEY_METRIC])
    if ap >= WEAK_VALIDATION:
        return None
    return (
        f"the fine-tuned model beat the base on the validation images only at a low score "
        f"(DSB AP {ap:.3f} against {base:.3f}): little evidence either way; check it on other "
        "images, or validate on an image where the base model finds some objects"
    )


def epoch_score(metrics: dict[str, float], losses: list[float]) -> float:
    """DSB AP with pixel Dice breaking ties; minus the mean loss when there is no validation."""
    if KEY_METRIC not in metrics:
        return -float(np.mean(losses)) if losses else -math.inf
    return float(metrics[KEY_METRIC]) + 1e-3 * float(metrics.get("pixel_dice", 0.0))
