"""A registry of typed, keyword-only model builders (torchvision style).

Each family (``"unet"``, ``"maskrcnn"``) registers one builder function whose keyword
arguments are exactly what a model card stores as ``builder_args``, so a weight file can
rebuild its own architecture.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch

from napari_cellseg.errors import ModelBuildError

ModelBuilder = Callable[..., torch.nn.Module]

_BUILDERS: dict[str, ModelBuilder] = {}


def register_model(family: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder`` under ``family`` (decorator)."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if family in _BUILDERS:
            raise ValueError(f"model family {family!r} is already registered")
        _BUILDERS[family] = builder
        return builder

    return decorator


def available_families() -> list[str]:
    """Names of the registered model families, sorted."""
    _ensure_builtin_families()
    return sorted(_BUILDERS)


def get_builder(family: str) -> ModelBuilder:
    """Return the builder registered for ``family``.

    Raises
    ------
    ModelBuildError
        If no such family exists (the message lists the known ones).
    """
    _ensure_builtin_families()
    try:
        return _BUILDERS[family]
    except KeyError:
        known = ", ".join(sorted(_BUILDERS))
        raise ModelBuildError(f"unknown model family {family!r}; choose one of: {known}") from None


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


def _ensure_builtin_families() -> None:
    # Importing the modules runs their @register_model decorators.
    from napari_cellseg.models import maskrcnn, unet  # noqa: F401
