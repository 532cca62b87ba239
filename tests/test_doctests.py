"""Every docstring example in the package runs and gives what it shows.

This is ``pytest --doctest-modules`` over ``src/napari_cellseg``, as one test per module so
that the test folders' conftest files are not collected as modules too.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import napari_cellseg

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(napari_cellseg.__path__, "napari_cellseg.")
    if not info.name.endswith("__main__")  # runs the CLI when imported
)

#: Modules whose pure functions promise examples: they must keep at least one.
WITH_EXAMPLES = [
    "labels.overlap",
    "inference.tiling",
    "inference.stitch",
    "inference.planes",
    "models.normalise",
    "events",
    "inference.api",
    "inference.preprocess",
    "params",
    "families",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_modules_with_pure_functions_keep_their_examples(name: str) -> None:
    module = importlib.import_module(f"napari_cellseg.{name}")
    examples = sum(len(t.examples) for t in doctest.DocTestFinder().find(module))
    assert examples > 0, f"napari_cellseg.{name} lost its docstring examples"
