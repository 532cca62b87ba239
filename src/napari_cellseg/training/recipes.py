"""Training recipes: the fast-adaptation recipe for a few corrected images, and the classic one.

A recipe is a set of :class:`~napari_cellseg.params.TrainParams` values. ``classic`` is the
dataclass's defaults (long runs from scratch; fine-tuning at a tenth of the family's learning
rate with BatchNorm frozen). ``fast`` is for what users do in the dock: adapt a trained model
to a new kind of image from three or so corrected images in a few CPU minutes. It

- re-estimates the BatchNorm statistics on the user's images before training (AdaBN,
  Li et al. 2016), then keeps them fixed;
- trains the decoder and head at the family's full learning rate and the encoder at a
  fraction of it, after a short linear warm-up, decaying to zero over the time budget;
- cuts small crops (128 px for the U-Net) mostly centred on the corrected objects, so a CPU
  minute holds about four times the steps of the classic recipe;
- validates after every few steps (short epochs) and stops early.

These values were set once and then measured against the classic recipe by ``bench/hitl.py``
(``docs/benchmarks.md``, "Human in the loop"); no other setting has been tried yet.

>>> recipe_params("fast", "unet").patch_size
128
>>> recipe_params("classic", "unet", epochs=3).patch_size
256
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from napari_cellseg.errors import CellsegError
from napari_cellseg.params import TrainParams, fine_tune_learning_rate

__all__ = ["FAST_RECIPE", "RECIPES", "recipe_params", "recipe_values"]

RECIPES = ("fast", "classic")
"""Recipe names, default first."""

FAST_RECIPE: dict[str, dict[str, Any]] = {
    "unet": {
        "patch_size": 128,
        "batch_size": 8,
        "samples_per_epoch": 96,
        "learning_rate": 1e-3,
        "encoder_lr_factor": 0.3,
        "warmup_steps": 20,
        "adapt_batchnorm": True,
        "freeze_batchnorm": True,
        "foreground_bias": 0.9,
        "early_stopping_patience": 10,
        "schedule": "cosine",
    },
    "maskrcnn": {
        "patch_size": 256,
        "batch_size": 4,
        "samples_per_epoch": 32,
        "learning_rate": 0.005,
        "encoder_lr_factor": 0.3,
        "warmup_steps": 10,
        "adapt_batchnorm": True,
        "freeze_batchnorm": True,
        "foreground_bias": 0.9,
        "early_stopping_patience": 10,
        "schedule": "cosine",
    },
}
"""The fast recipe's values per family."""


def recipe_values(recipe: str, family: str) -> dict[str, Any]:
    """The TrainParams values ``recipe`` sets for ``family`` (classic: the fine-tuning rate).

    Examples
    --------
    >>> recipe_values("fast", "unet")["adapt_batchnorm"]
    True
    >>> recipe_values("classic", "unet")["learning_rate"]
    0.0001
    """
    if recipe not in RECIPES:
        raise CellsegError(f"unknown training recipe {recipe!r}; use {' or '.join(RECIPES)}")
    if recipe == "classic":
        return {"recipe": "classic", "learning_rate": fine_tune_learning_rate(family)}
    if family not in FAST_RECIPE:
        raise CellsegError(f"the fast recipe has no values for a {family!r} model yet")
    return {"recipe": "fast", **FAST_RECIPE[family]}


def recipe_params(recipe: str, family: str, **overrides: Any) -> TrainParams:
    """TrainParams for fine-tuning a ``family`` model with ``recipe``; ``overrides`` win.

    ``None`` in ``overrides`` means "the recipe's value" (so command-line options left unset
    keep the recipe's).
    """
    known = {f.name for f in fields(TrainParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CellsegError(f"unknown training parameters: {', '.join(unknown)}")
    values = {"family": family, **recipe_values(recipe, family)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("samples_per_epoch", 0) and "batch_size" not in overrides:
        values["batch_size"] = min(values.get("batch_size", 8), values["samples_per_epoch"])
    return TrainParams(**values)
