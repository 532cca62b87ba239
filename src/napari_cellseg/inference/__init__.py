"""From an image and a model to labels: tiling, merging, TTA, blocks, post-processing.

The front door is :func:`iter_predict` (a generator of progress events that returns the
:class:`Prediction`) and :func:`predict` (runs it to the end), from :mod:`.api`. They are
imported on first use, so that importing a light submodule (``preprocess``) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DEFAULT_BLOCKS", "Prediction", "in_blocks", "iter_predict", "predict", "reapply"]

_HOMES = {
    "DEFAULT_BLOCKS": "api",
    "in_blocks": "api",
    "iter_predict": "api",
    "predict": "api",
    "Prediction": "planes",
    "reapply": "planes",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
