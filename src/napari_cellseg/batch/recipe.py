"""A batch run's recipe: what makes its labels what they are, and its hash.

The recipe is the weight file's sha256 plus every parameter that changes the labels;
``device`` and ``batch_size`` do not, and are left out of the hash (the manifest records
them). One output folder holds the results of one recipe (:mod:`.manifest`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from napari_cellseg.models.card import package_versions

__all__ = [
    "RESULT_NEUTRAL",
    "library_versions",
    "make_recipe",
    "recipe_difference",
    "recipe_hash",
    "sha256_path",
]

VERSION = 1
RESULT_NEUTRAL = ("device", "batch_size")
"""Parameters that do not change the labels: recorded, but not part of the recipe hash."""
BATCH_LIBRARIES = ("napari-cellseg", "numpy", "torch", "scikit-image", "scipy", "tifffile", "dask")


def sha256_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of every file (name and content) of a folder, streamed."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def make_recipe(weights_sha256: str, params: dict[str, Any]) -> dict[str, Any]:
    """The result-changing part of a run: weights checksum and parameters."""
    kept = {k: v for k, v in params.items() if k not in RESULT_NEUTRAL}
    if kept.get("tta") == 1:  # off: left out, so folders written before the option resume
        del kept["tta"]
    return {"format": VERSION, "weights_sha256": weights_sha256, "params": kept}


def recipe_hash(recipe: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a recipe."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the results."""
    return package_versions(BATCH_LIBRARIES, missing="not installed")


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two recipes, in words (for the refusal message)."""
    if old.get("weights_sha256") != new.get("weights_sha256"):
        return "the weights differ"
    old_p, new_p = _flat(old.get("params", {})), _flat(new.get("params", {}))
    for params in (old_p, new_p):
        params.setdefault("tta", 1)  # left out of recipes when off (see make_recipe)
    changed = [
        f"{k} {old_p.get(k)!r} -> {new_p.get(k)!r}"
        for k in sorted(set(old_p) | set(new_p))
        if old_p.get(k) != new_p.get(k)
    ]
    return "parameters differ: " + "; ".join(changed) if changed else "the recipe differs"
