"""The network a training run starts from: injected, resumed, a base model, or new."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_cellseg.families import family_spec
from napari_cellseg.models import ModelCard, build_model, load_weights
from napari_cellseg.models.unused_stages import placeholder_keys
from napari_cellseg.params import TrainParams

__all__ = ["starting_model"]


def starting_model(
    params: TrainParams,
    model: torch.nn.Module | None,
    card: ModelCard | None,
    init: str | Path | None,
    state: dict | None,
) -> tuple[torch.nn.Module, ModelCard, list[str]]:
    """The network a training run starts from, its card, and notices about it.

    In order: an injected ``model`` (tests; ``card`` or a fresh one for ``params``), a
    resumed checkpoint's architecture (``state`` with its ``card``; the weights are restored
    later), the ``init`` weight file (a fine-tune; with ``params.builder_args`` that change
    the architecture, a new network takes every tensor of matching shape and says how many
    it re-initialised, never the zero placeholders of stages the base never ran), or a new
    network of ``params.family``.
    """
    notices: list[str] = []
    if model is not None:
        card = card or ModelCard.for_model(params.family, params.builder_args or {})
        return model, card, notices
    if state is not None and card is not None:
        return build_model(card.family, **card.builder_args), card, notices
    if init is not None:
        loaded = load_weights(init)
        card = loaded.card
        if card.family != params.family:
            notices.append(f"{Path(init).name} is a {card.family}: training that family")
        wanted = {**card.builder_args, **(params.builder_args or {})}
        if wanted != card.builder_args:
            model = build_model(card.family, **wanted)
            own = model.state_dict()
            unused = placeholder_keys(loaded.model)  # zeros of stages it never ran
            kept = {
                k: v
                for k, v in loaded.model.state_dict().items()
                if k in own and own[k].shape == v.shape and k not in unused
            }
            model.load_state_dict(kept, strict=False)
            skipped = sorted(set(own) - set(kept) - placeholder_keys(model))
            head = family_spec(card.family).head_arg
            notices.append(
                f"{head} changed from {card.builder_args.get(head)} to {wanted.get(head)}: "
                f"re-initialised {len(skipped)} tensors ({', '.join(skipped[:2])}...)"
            )
            card = ModelCard.for_model(
                card.family,
                wanted,
                normalisation=card.normalisation,
                channel_handling=card.channel_handling,
                object_diameter=card.object_diameter,  # the scale the kept layers learnt
            )
            return model, card, notices
        return loaded.model, card, notices
    args = params.builder_args or dict(family_spec(params.family).default_builder_args)
    return build_model(params.family, **args), ModelCard.for_model(params.family, args), notices
