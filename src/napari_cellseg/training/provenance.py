"""The model card a training run writes: its provenance (data, settings, history, metrics)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from napari_cellseg.models import ModelCard
from napari_cellseg.training.scale import card_diameter


def kept_base_card(card, params, manifest, history, baseline, init) -> ModelCard:
    """The base model's card, its values unchanged; the provenance says no epoch beat it."""
    provenance = {
        **trained_card(card, params, manifest, history, 0, baseline, init).provenance,
        "kept_base": True,
        "note": "no epoch beat the base model on the validation images: its weights unchanged",
        "base_provenance": card.provenance,
    }
    return replace(card, provenance=provenance)


def trained_card(
    card, params, manifest, history, best_epoch, metrics, init, object_size=None
) -> ModelCard:
    """``card`` with the provenance of a training run whose best epoch is ``best_epoch``.

    ``object_size`` (the training's measured and target object diameters) sets the card's
    ``object_diameter`` and its source, and is kept in the provenance.
    """
    provenance = {
        "source": "napari-cellseg training",
        "init": Path(init).name if init else None,
        "training": params.to_dict(),
        "data_manifest": manifest,
        "epochs": best_epoch,
        "history": history,
        "metrics": metrics,
    }
    sizes = {}
    if object_size is not None:
        diameter, source = card_diameter(object_size)
        provenance["object_size"] = object_size
        sizes = {"object_diameter": diameter, "object_diameter_source": source}
    return replace(
        card,
        provenance=provenance,
        created=ModelCard.for_model(card.family, card.builder_args).created,
        **sizes,
    )


__all__ = ["kept_base_card", "trained_card"]
