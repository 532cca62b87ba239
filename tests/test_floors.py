"""The package's floors only import downwards (the plan at the top of docs/development.md).

Every ``import`` of ``napari_cellseg`` in every module, at module level or inside a function,
is read from the source, so a lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_cellseg

PACKAGE = Path(napari_cellseg.__file__).parent

#: Each part of the package and its floor; a part may import its own floor's part and any
#: part on a lower floor, never a part on its own floor or above.
FLOORS: dict[str, int] = {
    "__init__": 0,
    "errors": 0,
    "events": 1,
    "families": 1,
    "fields": 1,
    "diameters": 1,
    "block_options": 1,
    "params": 2,
    "device": 2,
    "io": 3,
    "labels": 3,
    "models": 4,
    "inference": 5,
    "training": 6,
    "batch": 7,
    "cli": 8,
    "demo": 8,
    "_launch": 10,
    "_napari": 9,
}


def part_of(module: str) -> str:
    """The part a dotted module name (below ``napari_cellseg``) belongs to."""
    return module.split(".")[0] or "__init__"


def imported_modules(source: str, here: list[str]) -> set[str]:
    """Every ``napari_cellseg`` module or name a source imports, below the package.

    ``here`` is the source's folder below the package (for relative imports).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(
                    ["napari_cellseg", *base, *([node.module] if node.module else [])]
                )
            else:
                module = node.module or ""
            names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
            if node.module and module == "napari_cellseg":
                names = [f"napari_cellseg.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "napari_cellseg":
                continue
            if name.startswith("napari_cellseg."):
                found.add(name.removeprefix("napari_cellseg."))
    return found


def all_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_sample_data" not in p.parts)


def test_every_part_has_a_floor() -> None:
    parts = {part_of(".".join(p.relative_to(PACKAGE).with_suffix("").parts)) for p in all_modules()}
    assert parts <= set(FLOORS), f"parts without a floor: {sorted(parts - set(FLOORS))}"


def upward_imports() -> list[str]:
    bad = []
    for path in all_modules():
        own = part_of(".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        here = list(path.relative_to(PACKAGE).parts[:-1])
        for module in imported_modules(path.read_text(), here):
            other = part_of(module)
            if other == "__version__":
                continue
            if other == own:
                continue
            if FLOORS.get(other, 99) >= FLOORS[own]:
                bad.append(
                    f"{path.relative_to(PACKAGE)} ({own}, floor {FLOORS[own]}) imports "
                    f"{module} ({other}, floor {FLOORS.get(other)})"
                )
    return bad


def test_no_module_imports_a_floor_above_or_beside_it() -> None:
    bad = upward_imports()
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from napari_cellseg.inference.planes import predict\n", {"inference.planes"}),
        ("def f():\n    from napari_cellseg import models\n", {"models"}),
        ("import napari_cellseg.training.loop as loop\n", {"training.loop"}),
        ("from .stitch import Block\n", {"inference.stitch"}),
        ("from .. import errors\n", {"errors"}),
    ],
)
def test_the_reader_sees_every_form_of_import(source, expected) -> None:
    assert imported_modules(source, ["inference"]) == expected


def test_an_upward_import_is_caught(monkeypatch) -> None:
    source = "def f():\n    from napari_cellseg.training.loop import fit\n"
    found = imported_modules(source, ["inference"])
    assert {part_of(m) for m in found} == {"training"}
    assert FLOORS["training"] > FLOORS["inference"]
