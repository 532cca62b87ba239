"""The house rules of the package's layout: small modules that say what they hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_cellseg

PACKAGE = Path(napari_cellseg.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "_sample_data" not in p.parts)
#: "Small modules with one job (aim under ~400 lines)": past this a module must be split.
MAX_LINES = 450


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_opens_with_a_line_saying_what_it_holds(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    if path.name == "__init__.py" and path.parent != PACKAGE and not path.read_text().strip():
        pytest.fail(f"{path.relative_to(PACKAGE)} is empty: say what the package holds")
    assert docstring, f"{path.relative_to(PACKAGE)} has no module docstring"
    assert docstring.splitlines()[0].strip(), f"{path.relative_to(PACKAGE)}: empty first line"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it"
