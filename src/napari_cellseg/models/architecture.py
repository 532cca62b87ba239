"""Inferring the architecture of a foreign state dict from its keys and tensor shapes.

Supports what users actually have: ``torch.save(model.state_dict())`` of an smp U-Net (any
smp encoder) and of a torchvision Mask R-CNN fine-tuned as in torchvision's detection
tutorial (ResNet-50 FPN v1/v2, or ResNet-18/34 FPN), with ``num_classes`` read from the
predictor shapes. Each family's ``models`` module says which keys it claims and reads its
builder arguments from them (``claims_state_dict`` and ``infer_builder_args``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from napari_cellseg.errors import WeightFileError
from napari_cellseg.families import FAMILIES, family_part
from napari_cellseg.models.state_dict_io import StateDict


def expected_keys() -> str:
    """What the families expect, e.g. ``an smp U-Net (encoder.*, ...) or a torchvision ...``."""
    return " or ".join(family_part(spec, "models").EXPECTED_KEYS for spec in FAMILIES.values())


def infer_architecture(
    state: StateDict, path: str | Path = "<state dict>"
) -> tuple[str, dict[str, Any]]:
    """Return ``(family, builder_args)`` for a state dict without a model card.

    The families are asked in table order; the first that claims the keys reads them.

    Raises
    ------
    WeightFileError
        When the keys match no supported architecture (the message lists what was
        expected and a few of the keys found).
    """
    keys = set(state)
    for name, spec in FAMILIES.items():
        part = family_part(spec, "models")
        if part.claims_state_dict(keys):
            return name, part.infer_builder_args(state, path)
    sample = ", ".join(sorted(keys)[:4]) or "none"
    raise WeightFileError(
        path, f"unknown architecture: expected {expected_keys()}; found keys like {sample}"
    )


def block_indices(keys: Iterable[str], prefix: str) -> list[int]:
    """The sorted block numbers ``n`` of keys starting with ``prefix`` + ``n.``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})
