"""Building a model of any family from keyword-only builder arguments (torchvision style).

Each family's builder is named by its :class:`~napari_cellseg.families.FamilySpec` in the
explicit table :data:`napari_cellseg.families.FAMILIES`; its keyword arguments are exactly
what a model card stores as ``builder_args``, so a weight file can rebuild its own
architecture.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch

from napari_cellseg.errors import ModelBuildError
from napari_cellseg.families import FAMILIES, family_part

ModelBuilder = Callable[..., torch.nn.Module]


def available_families() -> list[str]:
    """Names of the model families, sorted."""
    return sorted(FAMILIES)


def get_builder(family: str) -> ModelBuilder:
    """Return the builder of ``family``.

    Raises
    ------
    ModelBuildError
        If no such family exists (the message lists the known ones).
    """
    spec = FAMILIES.get(family) if isinstance(family, str) else None
    if spec is None:
        known = ", ".join(sorted(FAMILIES))
        raise ModelBuildError(f"unknown model family {family!r}; choose one of: {known}")
    return getattr(family_part(spec, "models"), spec.builder)


def build_model(family: str, **builder_args: Any) -> torch.nn.Module:
    """Build a model of ``family`` with keyword-only ``builder_args``.

    Parameters
    ----------
    family : str
        ``"unet"`` or ``"maskrcnn"``.
    **builder_args
        Passed to the family's builder; unknown names raise a clear error.

    Returns
    -------
    torch.nn.Module
        A randomly initialised model (never downloads weights).
    """
    builder = get_builder(family)
    try:
        return builder(**builder_args)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            import inspect

            accepted = [
                name
                for name, p in inspect.signature(builder).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY
            ]
            unknown = [name for name in builder_args if name not in accepted]
            hints = [
                f"{name!r} (did you mean {difflib.get_close_matches(name, accepted, 1)[0]!r}?)"
                if difflib.get_close_matches(name, accepted, 1)
                else repr(name)
                for name in unknown
            ]
            raise ModelBuildError(
                f"{family} builder got unknown argument(s) {', '.join(hints)}; "
                f"accepted: {', '.join(accepted)}"
            ) from None
        raise
