"""Object size at inference: rescaling a plane to the model's scale and labels back.

The model sees objects best at the diameter it was trained on
(:meth:`~napari_cellseg.models.card.ModelCard.reference_diameter`). An image whose objects
are ``diameter`` px across is rescaled by ``scale = reference / diameter`` before the
network (:func:`rescale_input`, bilinear, antialiased when shrinking), segmented as usual,
and its labels are brought back to the image's grid with nearest neighbour
(:func:`to_image_grid`), ids kept consecutive and the object table measured again there.
:func:`median_diameter` is the size estimate ``diameter="auto"`` uses, and
:func:`object_confidence` how sure a U-Net is of its objects at a scale;
:func:`fixed_scale` the diameter and scale of a run that needs no estimate, and
:func:`central_crop` the part of an image an estimate looks at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.segmentation import relabel_sequential

from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.postprocess import object_probability
from napari_cellseg.labels import sizes
from napari_cellseg.labels.sizes import nearest_index
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel, read_card
from napari_cellseg.params import DIAMETER_RANGE, PredictParams, parse_diameter

__all__ = [
    "SKIP_TOLERANCE",
    "central_crop",
    "estimates_each_image",
    "fixed_scale",
    "median_diameter",
    "model_card",
    "object_confidence",
    "plane_shape",
    "rescale_input",
    "resize_maps",
    "scale_action",
    "scale_for",
    "scaled_shape",
    "to_image_grid",
]

SKIP_TOLERANCE = 0.1
"""A scale within this fraction of 1 (|log scale| below ``log(1.1)``) is not applied."""


def scale_for(reference: float, diameter: float | None) -> float:
    """The rescaling factor ``reference / diameter``; 1.0 when close to 1 or no diameter.

    >>> scale_for(18.0, 36.0), scale_for(18.0, 19.0), scale_for(18.0, None)
    (0.5, 1.0, 1.0)
    """
    if diameter is None:
        return 1.0
    scale = float(reference) / float(diameter)
    return 1.0 if abs(math.log(scale)) <= math.log1p(SKIP_TOLERANCE) else scale


def scaled_shape(shape: Sequence[int], scale: float) -> tuple[int, int]:
    """The ``(Y, X)`` size of a plane of ``shape`` rescaled by ``scale`` (at least 1 px).

    >>> scaled_shape((100, 51), 0.5), scaled_shape((3, 3), 0.1)
    ((50, 26), (1, 1))
    """
    size = tuple(max(1, round(int(s) * scale)) for s in tuple(shape)[-2:])
    return size  # type: ignore[return-value]


def rescale_input(x: np.ndarray, scale: float) -> np.ndarray:
    """Rescale a normalised model input ``(C, Y, X)`` float32 by ``scale`` (bilinear).

    Shrinking is antialiased, so that fine texture does not alias into false edges.

    >>> rescale_input(np.ones((3, 10, 20), np.float32), 0.5).shape
    (3, 5, 10)
    """
    if scale == 1.0:
        return x
    return _bilinear(x, scaled_shape(x.shape[-2:], scale), antialias=scale < 1)


def resize_maps(maps: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Probability maps ``(C, y, x)`` resized to ``shape`` ``(Y, X)`` (bilinear, float32).

    >>> resize_maps(np.ones((2, 5, 10), np.float16), (10, 20)).shape
    (2, 10, 20)
    """
    size = tuple(int(s) for s in tuple(shape)[-2:])
    if tuple(maps.shape[-2:]) == size:
        return np.asarray(maps, np.float32)
    return _bilinear(maps, size, antialias=False)


def _bilinear(x: np.ndarray, size: tuple[int, ...], *, antialias: bool) -> np.ndarray:
    """``(C, y, x)`` resampled to ``size`` with torch's bilinear interpolation, as float32."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    out = torch.nn.functional.interpolate(
        t, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias
    )
    return out[0].numpy()


def to_image_grid(
    labels: np.ndarray, table: dict[str, np.ndarray], shape: Sequence[int]
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Labels of a rescaled plane back on the image's ``(Y, X)`` grid, objects whole.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(y, x)`` labels at the model's scale.
    table : dict of str to numpy.ndarray
        Their object table (its ``score``/``class`` columns are carried over).
    shape : sequence of int
        The image plane's ``(Y, X)``.

    Returns
    -------
    labels : numpy.ndarray
        ``(Y, X)`` labels (nearest neighbour), ids consecutive from 1.
    table : dict of str to numpy.ndarray
        Measured again on the image's grid (areas, bboxes).
    lost : int
        Objects too small to keep a pixel on the image's grid.

    Examples
    --------
    >>> small = np.zeros((4, 4), np.uint16); small[0, 0] = 1; small[2:, 2:] = 2
    >>> big, t, lost = to_image_grid(small, object_table(small), (8, 8))
    >>> t["area"].tolist(), lost
    ([4, 16], 0)
    >>> back, t, lost = to_image_grid(big, t, (2, 2))
    >>> back.tolist(), t["label"].tolist(), lost
    ([[0, 0], [0, 1]], [1], 1)
    """
    height, width = (int(s) for s in tuple(shape)[-2:])
    rows = nearest_index(labels.shape[-2], height)
    cols = nearest_index(labels.shape[-1], width)
    grid = labels[rows[:, None], cols[None, :]]
    relabelled, forward, _ = relabel_sequential(grid)
    out = relabelled.astype(labels.dtype, copy=False)
    old_ids = np.asarray(table.get("label", ()), np.int64)
    lost = int(np.count_nonzero(forward[old_ids] == 0)) if old_ids.size else 0
    new_table = object_table(out)
    extra = [k for k in ("score", "class") if k in table]
    if extra and old_ids.size:
        position = {int(forward[o]): i for i, o in enumerate(old_ids) if forward[o]}
        rows_of = np.array([position[int(n)] for n in new_table["label"]], np.int64)
        for key in extra:
            new_table[key] = np.asarray(table[key])[rows_of]
    return out, new_table, lost


def median_diameter(labels: np.ndarray, *, min_area: int = 4) -> float | None:
    """Median equivalent diameter (px) of the objects of a ``(Y, X)`` label image.

    Objects touching the border (cut) and those below ``min_area`` pixels (fragments)
    are left out, unless nothing else is left; the result is clipped to
    :data:`~napari_cellseg.diameters.DIAMETER_RANGE`. ``None`` when there are no objects.

    >>> labels = np.zeros((40, 40), np.uint8); labels[5:15, 5:15] = 1; labels[20:30, 20:30] = 2
    >>> round(median_diameter(labels), 2)
    11.28
    """
    diameter = sizes.median_diameter(labels, exclude_border=True, min_area=min_area)
    if diameter is None:
        return None
    lo, hi = DIAMETER_RANGE
    return min(max(diameter, lo), hi)


def object_confidence(probabilities: np.ndarray, outputs: Sequence[str]) -> float | None:
    """How sure a U-Net is of its objects: the mean object probability where it is above 0.5.

    The object channel is ``interior`` when the model has one, else ``foreground``, else
    one minus ``background``. ``None`` when no pixel is above 0.5.

    >>> probs = np.zeros((3, 4, 4), np.float32); probs[0] = 1.0
    >>> probs[:, :2, :2] = np.array([0.05, 0.9, 0.05])[:, None, None]
    >>> probs[:, :2, 2] = np.array([0.3, 0.6, 0.1])[:, None]
    >>> round(object_confidence(probs, ["background", "interior", "boundary"]), 3)
    0.8
    >>> object_confidence(np.zeros((1, 4, 4)), ["foreground"]) is None
    True
    """
    objects = object_probability(probabilities, outputs, interior_first=True)
    if objects is None:
        return None
    sure = objects > 0.5
    return float(objects[sure].mean()) if sure.any() else None


def model_card(model: str | Path | LoadedModel) -> ModelCard:
    """The card of a loaded model or weight file (only the header is read)."""
    return model.card if isinstance(model, LoadedModel) else read_card(model)


def fixed_scale(
    card: ModelCard, params: PredictParams, pixel_size_um: float | Sequence[float] | None = None
) -> tuple[float | None, float, str] | None:
    """The diameter, scale and notice of a run that needs no estimate; None for ``"auto"``.

    :func:`iter_choose_scale` without its quick passes: ``"off"`` (or a model without object
    sizes) gives ``(None, 1.0, "")``, a number in pixels or micrometres its scale, an unset
    diameter on a fine-tuned model that model's own images' size (with the notice saying
    so). Lets a caller group images by scale before running any of them
    (:mod:`.image_groups`).

    Raises
    ------
    CellsegError
        A micrometre diameter without a pixel size, or pixels outside 2-500.
    """
    value = parse_diameter(params.diameter, pixel_size_um, need_pixels=True)
    if value == "off":
        return None, 1.0, ""
    reference = card.reference_diameter()
    if value is None and card.default_diameter is not None:  # a fine-tune's own images' size
        diameter, scale = card.default_diameter, scale_for(reference, card.default_diameter)
        message = f"object diameter {diameter:.0f} px, the median of the objects this model was"
        message += (
            f" fine-tuned on \u2192 {scale_action(scale)} (diameter auto estimates it per image)"
        )
        return diameter, scale, message
    if value is None:
        if card.object_diameter is None:
            return None, 1.0, ""
        return None  # "auto": the card's learned size, estimated per image
    if value != "auto":
        return float(value), scale_for(reference, float(value)), ""
    return None


def scale_action(scale: float) -> str:
    """What a run does with the image at ``scale``, as the notices say it.

    >>> scale_action(0.5), scale_action(1.0)
    ('rescaled \u00d70.50', 'not rescaled')
    """
    return f"rescaled \u00d7{scale:.2f}" if scale != 1.0 else "not rescaled"


def plane_shape(image: Any, axes: str) -> tuple[int, int]:
    """The ``(Y, X)`` size of an image with ``axes``.

    >>> plane_shape(np.zeros((2, 30, 40)), "ZYX")
    (30, 40)
    """
    shape = dict(zip(axes, np.shape(image), strict=True))
    return shape["Y"], shape["X"]


def central_crop(image: Any, axes: str, side: int) -> tuple[np.ndarray, str]:
    """The middle plane's central ``side`` x ``side`` px (channels kept), read as numpy.

    >>> crop, axes = central_crop(np.zeros((5, 3, 100, 80)), "ZCYX", 50)
    >>> crop.shape, axes
    ((3, 50, 50), 'CYX')
    """
    index: list[Any] = []
    for axis, size in zip(axes, np.shape(image), strict=True):
        if axis in "TZ":
            index.append(size // 2)
        elif axis in "YX":
            start = max(0, (size - side) // 2)
            index.append(slice(start, start + side))
        else:
            index.append(slice(None))
    return np.asarray(image[tuple(index)]), "".join(a for a in axes if a not in "TZ")


def estimates_each_image(card: ModelCard, params: PredictParams) -> bool:
    """Whether a run estimates the object diameter from each image (``"auto"``, or unset on a
    model whose default is ``"auto"``), rather than using one given or known for all.

    >>> card = ModelCard(family="unet", builder_args={}, input_channels=3, object_diameter=20.0)
    >>> [estimates_each_image(card, PredictParams(diameter=d)) for d in (None, "auto", 30.0)]
    [True, True, False]
    >>> estimates_each_image(ModelCard(family="unet", builder_args={}, input_channels=3),
    ...                      PredictParams())
    False
    """
    if params.diameter == "auto":
        return True
    return params.diameter is None and fixed_scale(card, params) is None
