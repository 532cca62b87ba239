"""bioimage.io model packages: the optional extra, offline validation, normalisation mapping.

The card's normalisation becomes bioimage.io preprocessing on export
(:func:`preprocessing_for`) and bioimage.io preprocessing becomes a card normalisation on
import (:func:`normalisation_from`). Validation uses the spec's own validator
(``bioimageio.spec``) on local files only, never the network (:func:`validate_package`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.errors import CellsegError
from napari_cellseg.models.card import ModelCard

EXTRA_HINT = "pip install 'napari-cellseg[bioimageio]'"
RDF_NAMES = ("bioimageio.yaml", "rdf.yaml")
"""File names of a package's description, newest convention first."""
CARD_CONFIG_KEY = "napari-cellseg"
"""Key under the description's ``config`` holding our full model card."""
UNET_KWARGS = (
    "encoder_name",
    "encoder_depth",
    "decoder_channels",
    "decoder_use_norm",
    "decoder_attention_type",
    "in_channels",
    "classes",
)
"""The ``build_unet`` arguments a package's architecture carries (exported and read back)."""


class BioimageioError(CellsegError):
    """A bioimage.io package cannot be written, validated or read."""


def require_spec() -> Any:
    """Import ``bioimageio.spec``, or fail with the one line that says how to install it."""
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise BioimageioError(
            f"bioimage.io support needs the optional extra: {EXTRA_HINT}"
        ) from None
    return spec


def validate_package(path: str | Path) -> list[str]:
    """Validate a package with ``bioimageio.spec``'s validator, offline.

    File checks (hashes, test tensors against the axes, the README, covers) are done
    (``perform_io_checks``); nothing is downloaded: the package's own files are all local.

    Parameters
    ----------
    path : str or Path
        A package ``.zip`` or a folder holding ``bioimageio.yaml``/``rdf.yaml``.

    Returns
    -------
    list of str
        The validator's warnings (empty when none).

    Raises
    ------
    BioimageioError
        One line with the validator's first error.
    """
    spec = require_spec()
    from bioimageio.spec import ValidationContext

    path = Path(path)
    with ValidationContext(perform_io_checks=True, log_warnings=False):
        descr = spec.load_description(path, perform_io_checks=True)
    summary = descr.validation_summary
    first = next((e for d in summary.details for e in d.errors), None)
    if summary.status == "failed" or first is not None:
        what = f"{'.'.join(map(str, first.loc))}: {first.msg}" if first else summary.status
        raise BioimageioError(f"{path}: not a valid bioimage.io package ({what})")
    return [f"{'.'.join(map(str, w.loc))}: {w.msg}" for d in summary.details for w in d.warnings]


# -- documentation ---------------------------------------------------------------------------
def readme(card: ModelCard) -> str:
    """The package's README.md: the card in words, how to use the model, validation."""
    prov = card.provenance
    metrics = prov.get("metrics") or {}
    shown = ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )
    lines = [
        f"# {card.name}",
        "",
        card.description or "A U-Net exported from napari-cellseg.",
        "",
        "## Model card",
        "",
        "```",
        card.summary(),
        "```",
        "",
        "## Inputs and outputs",
        "",
        f"Input `raw`: {card.input_channels} channel(s) ({card.channel_handling}), float32, in "
        "the image's own value range; the package's preprocessing applies the card's "
        f"normalisation ({card.normalisation}). Height and width must be multiples of "
        f"{2 ** int(card.builder_args.get('encoder_depth', 5))}.",
        "",
        f"Output `probabilities`: {', '.join(card.outputs)} ({card.output_activation}). "
        "napari-cellseg turns them into labelled objects with seeded watershed "
        f"({card.postprocess or 'library default thresholds'}).",
        "",
        "## Using it",
        "",
        "In napari-cellseg: `cellseg import-model model.zip --out model.safetensors`, then "
        "`cellseg predict image.tif --weights model.safetensors` (or `--weights model.zip`). "
        "Elsewhere: "
        "`segmentation_models_pytorch.Unet(**kwargs)` with the kwargs in `bioimageio.yaml` "
        "and `load_state_dict(torch.load('weights.pt', weights_only=True))`.",
        "",
        "## Validation",
        "",
        (
            f"Validation metrics recorded during training: {shown}."
            if shown
            else "No validation metrics were recorded with this model."
        ),
        "Validate on your own labelled images with `cellseg evaluate`.",
        "",
    ]
    return "\n".join(lines)


def write_cover(path: Path, x: np.ndarray, probs: np.ndarray, outputs: Sequence[str]) -> None:
    """A 2:1 PNG: the normalised test input beside its predicted interior/boundary."""
    import imageio.v3 as iio

    left = np.clip(x[:3] if len(x) >= 3 else np.repeat(x[:1], 3, 0), 0, 1)
    colours = {"interior": (0, 1, 0), "boundary": (1, 0, 1), "foreground": (0, 1, 0)}
    right = np.zeros_like(left)
    for k, name in enumerate(outputs):
        colour = colours.get(str(name))
        if colour is not None:
            right += np.asarray(colour, np.float32)[:, None, None] * probs[k][None]
    pair = np.concatenate([left, np.clip(right, 0, 1)], axis=2)  # side by side: 2:1
    iio.imwrite(path, (np.moveaxis(pair, 0, -1) * 255).round().astype(np.uint8))


# -- normalisation <-> preprocessing -------------------------------------------------------
def preprocessing_for(
    normalisation: Mapping[str, Any], channels: int, *, dtype_max: float
) -> list[dict[str, Any]]:
    """The bioimage.io v0.5 preprocessing steps equal to a card's normalisation.

    Parameters
    ----------
    normalisation : mapping
        The card's normalisation (see :func:`napari_cellseg.models.normalise.normalise`).
    channels : int
        The model's input channels.
    dtype_max : float
        The maximum of the image type the package expects (255 for uint8) for
        ``dtype-range`` and ``imagenet``.

    Examples
    --------
    >>> steps = preprocessing_for({"method": "percentile", "low": 1, "high": 99.8}, 3,
    ...                           dtype_max=255)
    >>> [s["id"] for s in steps]
    ['ensure_dtype', 'scale_range', 'clip']
    >>> steps[1]["kwargs"]["axes"], steps[1]["kwargs"]["max_percentile"]
    (['y', 'x'], 99.8)
    """
    method = normalisation.get("method")
    steps: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if method == "percentile":
        clip = bool(normalisation.get("clip", True))
        low, high = float(normalisation.get("low", 1.0)), float(normalisation.get("high", 99.8))
        steps.append(_scale_range(low, high))
        if clip:
            steps.append({"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}})
    elif method == "minmax":
        steps.append(_scale_range(0.0, 100.0))
    elif method in ("dtype-range", "imagenet"):
        scale = float(normalisation.get("max", dtype_max))
        if scale != 1.0:
            steps.append({"id": "scale_linear", "kwargs": {"gain": 1.0 / scale, "offset": 0.0}})
        if method == "imagenet":
            from napari_cellseg.models.normalise import IMAGENET_MEAN, IMAGENET_STD

            mean = _per_channel(normalisation.get("mean"), IMAGENET_MEAN, channels)
            std = _per_channel(normalisation.get("std"), IMAGENET_STD, channels)
            steps.append(
                {
                    "id": "fixed_zero_mean_unit_variance",
                    "kwargs": {"axis": "channel", "mean": mean, "std": std},
                }
            )
    elif method == "range":
        lo = [float(v) for v in normalisation.get("lo", ())]
        hi = [float(v) for v in normalisation.get("hi", ())]
        gain = [1.0 / (b - a) if b > a else 0.0 for a, b in zip(lo, hi, strict=True)]
        offset = [-a * g for a, g in zip(lo, gain, strict=True)]
        steps.append(
            {"id": "scale_linear", "kwargs": {"axis": "channel", "gain": gain, "offset": offset}}
        )
        if normalisation.get("clip", False):
            steps.append({"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}})
    elif method != "none":
        raise BioimageioError(
            f"normalisation {method!r} has no bioimage.io preprocessing equivalent"
        )
    if normalisation.get("invert", False):  # 1 - x on the [0, 1] values (before the mean/std)
        at = len(steps) - 1 if method == "imagenet" else len(steps)
        steps.insert(at, dict(FLIP))
    return steps


FLIP = {"id": "scale_linear", "kwargs": {"gain": -1.0, "offset": 1.0}}
"""The step that inverts values in [0, 1]: a card normalisation's ``"invert": True``."""


def _scale_range(low: float, high: float) -> dict[str, Any]:
    kwargs = {"axes": ["y", "x"], "min_percentile": low, "max_percentile": high}
    return {"id": "scale_range", "kwargs": kwargs}


def _per_channel(value: Any, default: Sequence[float], n: int) -> list[float]:
    values = [float(v) for v in (default if value is None else _as_list(value))]
    if len(values) == n:
        return values
    if len(values) == 1 or (value is None and n == 1):
        return [sum(values) / len(values)] * n
    raise BioimageioError(f"normalisation has {len(values)} values for {n} channels")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def normalisation_from(steps: Sequence[Any], where: str) -> dict[str, Any]:
    """A card normalisation equal to a package's preprocessing (descriptions or dicts).

    Parameters
    ----------
    steps : sequence
        The input's preprocessing: ``bioimageio.spec`` descriptions or plain dicts
        (``{"id": ..., "kwargs": {...}}``).
    where : str
        The package, for messages.

    Raises
    ------
    BioimageioError
        For preprocessing napari-cellseg cannot reproduce (e.g. ``zero_mean_unit_variance``).

    Examples
    --------
    >>> normalisation_from([{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
    ...     {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 1,
    ...      "max_percentile": 99.8}}, {"id": "clip", "kwargs": {"min": 0, "max": 1}}], "p")
    {'method': 'percentile', 'low': 1.0, 'high': 99.8, 'clip': True}
    >>> normalisation_from([{"id": "scale_linear", "kwargs": {"gain": 0.00392156862745098}}], "p")
    {'method': 'dtype-range', 'max': 255.0}
    """
    plain = [_plain_step(s) for s in steps]
    plain = [s for s in plain if s[0] != "ensure_dtype"]
    flips = [i for i, (name, kw) in enumerate(plain) if name == "scale_linear" and _flips(kw)]
    last = len(plain) - 1 - (plain[-1][0] == "fixed_zero_mean_unit_variance" if plain else 0)
    if flips and flips[-1] == last:  # last, or just before the mean and std
        rest = [{"id": n, "kwargs": k} for i, (n, k) in enumerate(plain) if i != flips[-1]]
        return {**normalisation_from(rest, where), "invert": True}
    ids = [s[0] for s in plain]
    kw = [s[1] for s in plain]
    clip = len(ids) >= 2 and ids[-1] == "clip" and _is_unit_clip(kw[-1])
    if clip:
        ids, kw = ids[:-1], kw[:-1]
    if not ids:
        return {"method": "none"}
    if ids == ["scale_range"] and _axes_per_sample_channel(kw[0]):
        low = float(kw[0].get("min_percentile", 0.0))
        high = float(kw[0].get("max_percentile", 100.0))
        if low == 0.0 and high == 100.0 and not clip:
            return {"method": "minmax"}
        return {"method": "percentile", "low": low, "high": high, "clip": clip}
    if ids[0] == "scale_linear" and len(ids) <= 2 and not _along_channel(kw[0]):
        gain, offset = float(kw[0].get("gain", 1.0)), float(kw[0].get("offset", 0.0))
        if offset == 0.0 and gain > 0:
            scale = round(1.0 / gain, 6)
            if len(ids) == 1 and not clip:
                return {"method": "dtype-range", "max": scale}
            if ids[1] == "fixed_zero_mean_unit_variance" and not clip:
                stats = kw[1]
                return {
                    "method": "imagenet",
                    "max": scale,
                    "mean": _floats(stats.get("mean")),
                    "std": _floats(stats.get("std")),
                }
    if ids == ["scale_linear"] and _along_channel(kw[0]):
        gain, offset = _floats(kw[0].get("gain")), _floats(kw[0].get("offset", 0.0))
        if len(offset) == 1:
            offset = offset * len(gain)
        if all(g > 0 for g in gain) and len(offset) == len(gain):
            lo = [-o / g for o, g in zip(offset, gain, strict=True)]
            hi = [a + 1.0 / g for a, g in zip(lo, gain, strict=True)]
            return {"method": "range", "lo": lo, "hi": hi, "clip": clip}
    shown = ", ".join(s[0] for s in plain)
    raise BioimageioError(
        f"{where}: its preprocessing ({shown}) has no napari-cellseg normalisation "
        "equivalent (supported: scale_range per channel, scale_linear, "
        "fixed_zero_mean_unit_variance after scale_linear, clip to [0, 1])"
    )


def _plain_step(step: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(step, Mapping):
        kwargs = step.get("kwargs") or {}
        return str(step.get("id") or step.get("name")), dict(kwargs)
    kwargs = step.kwargs.model_dump(mode="json") if hasattr(step.kwargs, "model_dump") else {}
    return str(step.id), kwargs


def _flips(kwargs: Mapping[str, Any]) -> bool:
    """``scale_linear`` kwargs that map [0, 1] onto [1, 0] (:data:`FLIP`)."""
    gain, offset = kwargs.get("gain"), kwargs.get("offset")
    return not _along_channel(kwargs) and gain == -1 and offset == 1


def _is_unit_clip(kwargs: Mapping[str, Any]) -> bool:
    return kwargs.get("min") == 0 and kwargs.get("max") == 1


def _axes_per_sample_channel(kwargs: Mapping[str, Any]) -> bool:
    axes = kwargs.get("axes")
    if axes is None:
        return False
    names = {str(a).lower() for a in (axes if not isinstance(axes, str) else list(axes))}
    return names == {"y", "x"}


def _along_channel(kwargs: Mapping[str, Any]) -> bool:
    return kwargs.get("axis") in ("channel", "c")


def _floats(value: Any) -> list[float]:
    values = [float(v) for v in _as_list(value)]
    if not all(math.isfinite(v) for v in values):
        raise BioimageioError(f"non-finite normalisation values {values}")
    return values
