"""The model card a training run writes: its provenance (data, settings, history, metrics).

A fine-tuned model's card also carries its **lineage** (``ModelCard.lineage``): every model
it descends from, oldest first, each with the sha256 of its weight file, its name, a summary
of its training history and its data manifest, so nothing of a model's ancestry is lost
across repeated fine-tunes (:func:`with_lineage`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from napari_cellseg.io.files import sha256_path
from napari_cellseg.models import ModelCard, read_card
from napari_cellseg.training.scale import card_diameter, images_diameter


def ancestor_entry(card: ModelCard, path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a descendant's lineage keeps of the model in weight file ``path`` (card ``card``).

    Returns
    -------
    dict
        ``name``, ``file`` (the file name), ``sha256`` (of the file), ``created``,
        ``history`` (``source``, ``init``, best ``epochs``, ``epochs_run``, ``metrics``,
        ``kept_base``) and ``data_manifest`` (as in the card's provenance; ``[]`` if none).
    """
    prov = card.provenance or {}
    history = prov.get("history") or []
    trained = [h for h in history if isinstance(h, dict) and h.get("epoch")]
    return {
        "name": card.name,
        "file": Path(path).name,
        "sha256": sha256_path(Path(path)),
        "created": card.created,
        "history": {
            "source": prov.get("source"),
            "init": prov.get("init"),
            "epochs": prov.get("epochs"),
            "epochs_run": len(trained),
            "metrics": prov.get("metrics") or {},
            "kept_base": bool(prov.get("kept_base", False)),
        },
        "data_manifest": list(prov.get("data_manifest") or []),
    }


def with_lineage(card: ModelCard, init: str | os.PathLike[str]) -> ModelCard:
    """``card`` (to be fine-tuned from weight file ``init``) with the base's lineage + the base.

    The base's card is read from ``init`` itself, so its lineage survives even when the
    training card was rebuilt (e.g. for a new head). Weight files without a lineage (older
    cards, foreign files) start one.
    """
    base = read_card(init)
    return replace(card, lineage=[*base.lineage, ancestor_entry(base, init)])


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
    ``object_diameter`` and its source, and is kept in the provenance. A fine-tune (``init``)
    also sets ``default_diameter`` to the median object diameter of its training images
    (:func:`~napari_cellseg.training.scale.images_diameter`): predictions then rescale new
    images of that kind as the corrected ones were.
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
        if init and (own := images_diameter(object_size)) is not None:
            sizes["default_diameter"] = own
    fresh = ModelCard.for_model(card.family, card.builder_args)
    return replace(
        card,
        provenance=provenance,
        created=fresh.created,
        library_versions=fresh.library_versions,  # this run's, not the init's
        **sizes,
    )


__all__ = ["ancestor_entry", "kept_base_card", "trained_card", "with_lineage"]
