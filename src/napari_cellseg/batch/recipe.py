"""A batch run's recipe: what makes its labels what they are, and its hash.

The recipe is the weight file's sha256 plus every parameter that changes the labels;
``device`` and ``batch_size`` do not, and are left out of the hash (the manifest records
them). One output folder holds the results of one recipe (:mod:`.manifest`). The extra
outputs asked for (measurements, GeoJSON / ROI set exports) are not part of it either: they
are recorded in the manifest, and a rerun that asks for one a file lacks redoes that file.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = [
    "BATCH_LIBRARIES",
    "RESULT_NEUTRAL",
    "make_recipe",
    "recipe_difference",
    "recipe_hash",
]

VERSION = 1
RESULT_NEUTRAL = ("device", "batch_size")
"""Parameters that do not change the labels: recorded, but not part of the recipe hash."""
BATCH_LIBRARIES = ("napari-cellseg", "numpy", "torch", "scikit-image", "scipy", "tifffile", "dask")
"""The libraries that shape a batch run's results (their versions go in the manifest)."""


def make_recipe(weights_sha256: str, params: dict[str, Any]) -> dict[str, Any]:
    """The result-changing part of a run: weights checksum and parameters.

    Options that are off are left out (``tta`` 1, ``compile`` and ``invert`` off,
    ``diameter`` None, the z-stack / time-lapse options when not stitching or linking), so
    folders written before they existed resume.
    """
    kept = {k: v for k, v in params.items() if k not in RESULT_NEUTRAL}
    if kept.get("tta") == 1:  # off: left out, so folders written before the option resume
        del kept["tta"]
    for name in ("compile", "invert"):  # off: likewise
        if kept.get(name) is False:
            del kept[name]
    if "diameter" in kept and kept["diameter"] is None:  # the model's default: likewise
        del kept["diameter"]
    for name in _unused_stack_options(kept):  # off or not used: likewise
        kept.pop(name, None)
    return {"format": VERSION, "weights_sha256": weights_sha256, "params": kept}


STACK_DEFAULTS = {
    "stitch_3d": False,
    "link_time": False,
    "stitch_iou": 0.25,
    "max_gap": 2,
    "z_spacing": None,
}
"""The z-stack / time-lapse options when off (``PredictParams``' defaults)."""


def _unused_stack_options(params: dict[str, Any]) -> list[str]:
    """The z-stack / time-lapse options that cannot change the labels of a run.

    >>> _unused_stack_options({"stitch_3d": True, "link_time": False, "max_gap": 5})
    ['link_time', 'max_gap']
    """
    stitch, link = params.get("stitch_3d", False), params.get("link_time", False)
    unused = [name for name, on in (("stitch_3d", stitch), ("link_time", link)) if not on]
    unused += ["z_spacing"] if not stitch else []
    unused += ["max_gap"] if not link else []
    unused += ["stitch_iou"] if not (stitch or link) else []
    return [name for name in STACK_DEFAULTS if name in unused]


def recipe_hash(recipe: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a recipe."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()


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
        params.setdefault("diameter", None)
        for name, value in STACK_DEFAULTS.items():
            params.setdefault(name, value)
    changed = [
        f"{k} {old_p.get(k)!r} -> {new_p.get(k)!r}"
        for k in sorted(set(old_p) | set(new_p))
        if old_p.get(k) != new_p.get(k)
    ]
    return "parameters differ: " + "; ".join(changed) if changed else "the recipe differs"
