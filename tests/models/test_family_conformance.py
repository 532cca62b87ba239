"""Every built-in model family passes the shared checks of ``tests/family_conformance.py``."""

from __future__ import annotations

import doctest
from typing import Any, ClassVar

from family_conformance import FamilyConformance
from napari_cellseg.families import FAMILIES
from tiny_models import TINY_MASKRCNN, TINY_UNET


def test_the_table_holds_the_built_in_families_in_order() -> None:
    assert list(FAMILIES) == ["unet", "maskrcnn"]
    assert {cls.family for cls in FamilyConformance.__subclasses__()} >= set(FAMILIES)


def test_the_family_table_docstring_examples_run() -> None:
    import napari_cellseg.families

    result = doctest.testmod(napari_cellseg.families, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


class TestUNetFamily(FamilyConformance):
    family = "unet"
    builder_args: ClassVar[dict[str, Any]] = TINY_UNET


class TestOneOutputUNetFamily(FamilyConformance):
    family = "unet"
    builder_args: ClassVar[dict[str, Any]] = {**TINY_UNET, "classes": 1}


class TestMaskRCNNFamily(FamilyConformance):
    family = "maskrcnn"
    builder_args: ClassVar[dict[str, Any]] = TINY_MASKRCNN
