"""The examples in the core modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "labels.overlap",
        "inference.tiling",
        "inference.stitch",
        "inference.planes",
        "models.normalise",
        "events",
        "inference.api",
        "inference.preprocess",
        "params",
    ],
)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"napari_cellseg.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
