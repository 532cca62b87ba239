"""Between napari layers and the core's arrays: axes, the current plane, result layers.

Napari-side helpers only (no Qt widgets): the Segment dock uses them to turn an Image layer
into ``(data, axes)`` for :func:`napari_cellseg.inference.iter_predict`, and to show a
:class:`~napari_cellseg.inference.planes.Prediction` as Labels, Shapes (boxes) and Image
(probability map) layers that are replaced, not piled up, when the user runs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import napari
import numpy as np
from napari.layers import Image, Labels, Layer, Shapes

from napari_cellseg.errors import CellsegError
from napari_cellseg.families import family_spec
from napari_cellseg.inference.postprocess import object_probability

LEAD_AXES = "TZ"
BOX_COLOR = "yellow"
#: Above this many boxes the scores colour the box edges instead of being written beside each
#: box: napari's text labels cost the GUI thread 0.4 s for 300 boxes and 1.6 s for 3000
#: (software OpenGL), against 0.1 s and 0.3 s without them.
MAX_BOX_TEXTS = 200
BOX_COLORMAP = "plasma"


@dataclass(frozen=True)
class ImageInput:
    """What one run segments.

    Attributes
    ----------
    data : array-like
        The layer's data, or one plane of it (a view; dask arrays stay lazy).
    axes : str
        Axis letters of ``data`` (``TZ`` lead, then ``YX`` and maybe ``S``/``C``).
    plane : tuple of int or None
        Index over the layer's T/Z axes when only the current plane is segmented.
    n_planes : int
        How many 2-D planes ``data`` holds (for the overall progress).
    """

    data: Any
    axes: str
    plane: tuple[int, ...] | None
    n_planes: int


@dataclass(frozen=True)
class ResultTarget:
    """Where a run's result goes: layer ``name`` over ``image`` (``plane`` of a stack)."""

    image: Image
    name: str
    plane: tuple[int, ...] | None
    weights: Path


def result_name(image_name: str, model_name: str) -> str:
    """The result layer's name: ``"<image> · <model card name>"``."""
    return f"{image_name} · {model_name}"


def layer_data(layer: Image) -> Any:
    """The full-resolution data of an Image layer (level 0 of a multiscale layer)."""
    return layer.data[0] if layer.multiscale else layer.data


def layer_axes(layer: Image) -> str:
    """Axis letters of an Image layer's data.

    RGB(A) layers end in ``YXS``; a non-RGB layer whose last axis has at most 4 entries while
    Y and X are larger ends in ``YXC`` (channels last); otherwise the last two axes are
    ``YX``. Up to two leading axes are ``Z`` or ``TZ``.
    """
    shape = tuple(int(s) for s in layer_data(layer).shape)
    if layer.rgb:
        core = "YXS"
    elif len(shape) >= 3 and shape[-1] <= 4 < min(shape[-3], shape[-2]):
        core = "YXC"
    else:
        core = "YX"
    n_lead = len(shape) - len(core)
    if n_lead < 0 or n_lead > len(LEAD_AXES):
        raise CellsegError(
            f"layer {layer.name!r} has {len(shape)} dimensions (shape {shape}); the Segment "
            "dock takes 2-D images, z-stacks and time-lapses (at most T, Z, Y, X)"
        )
    return LEAD_AXES[len(LEAD_AXES) - n_lead :] + core


def lead_count(axes: str) -> int:
    """Number of leading T/Z axes."""
    return sum(a in LEAD_AXES for a in axes)


def current_plane(layer: Image, viewer: napari.Viewer, axes: str | None = None) -> tuple[int, ...]:
    """Index over the layer's T/Z axes (``axes``, else :func:`layer_axes`) at the dims point."""
    data = layer_data(layer)
    axes = layer_axes(layer) if axes is None else axes
    position = layer.world_to_data(viewer.dims.point)
    return tuple(
        int(np.clip(round(float(position[i])), 0, data.shape[i] - 1))
        for i, letter in enumerate(axes)
        if letter in LEAD_AXES
    )


def image_input(
    layer: Image, viewer: napari.Viewer, *, only_current: bool, axes: str | None = None
) -> ImageInput:
    """The data and axes to segment: the whole layer, or the plane the viewer shows.

    ``axes``: the letters of the layer's data (with its channel axis, from the Channels row);
    :func:`layer_axes` guesses them when omitted.
    """
    data = layer_data(layer)
    axes = layer_axes(layer) if axes is None else axes
    lead = [i for i, letter in enumerate(axes) if letter in LEAD_AXES]
    if only_current and lead:
        plane = current_plane(layer, viewer, axes)
        index = [slice(None)] * len(axes)
        for i, position in zip(lead, plane, strict=True):
            index[i] = position
        rest = "".join(letter for letter in axes if letter not in LEAD_AXES)
        return ImageInput(data[tuple(index)], rest, plane, 1)
    n_planes = int(np.prod([data.shape[i] for i in lead], dtype=np.int64))
    return ImageInput(data, axes, None, n_planes)


def _placement(image: Image | None, ndim: int) -> dict[str, Any]:
    """Scale and translate of the image's last ``ndim`` display axes (to overlay it)."""
    if image is None or image.ndim < ndim:
        return {}
    return {"scale": tuple(image.scale[-ndim:]), "translate": tuple(image.translate[-ndim:])}


def _existing(viewer: napari.Viewer, name: str) -> Layer | None:
    return next((layer for layer in viewer.layers if layer.name == name), None)


def _replace_or_add(
    viewer: napari.Viewer, layer: Layer, existing: Layer | None, kind: type[Layer]
) -> Layer:
    """Put ``layer`` where ``existing`` was (same kind only) or on top of the list."""
    if isinstance(existing, kind):
        index = viewer.layers.index(existing)
        viewer.layers.remove(existing)
        viewer.layers.insert(index, layer)
    else:
        viewer.add_layer(layer)
    return layer


def put_labels(
    viewer: napari.Viewer,
    name: str,
    labels: np.ndarray,
    *,
    image: Image | None,
    metadata: dict[str, Any],
) -> Labels:
    """Show ``labels`` in the Labels layer ``name``: replace its data, or add the layer.

    A layer the user has edited (painted, or changed with the Correct tab) is never
    overwritten: the result goes to a new layer ``"<name> [2]"`` (``[3]``...) instead, so
    re-running or moving a threshold cannot discard corrections.
    """
    existing = _existing(viewer, name)
    if isinstance(existing, Labels) and existing.metadata.get(EDITED_KEY):
        name, existing = _free_name(viewer, name), None
    if isinstance(existing, Labels) and existing.data.ndim == labels.ndim:
        existing.data = labels
        existing.metadata = metadata
        return existing
    layer = Labels(labels, name=name, metadata=metadata, **_placement(image, labels.ndim))
    _watch_edits(layer)
    return _replace_or_add(viewer, layer, existing, Labels)


EDITED_KEY = "cellseg_edited"


def _watch_edits(layer: Labels) -> None:
    """Mark the layer as edited on napari's paint events (brush, fill, eraser, Correct tab)."""

    def mark(_event: Any = None) -> None:
        layer.metadata[EDITED_KEY] = True

    layer.events.paint.connect(mark)


def _free_name(viewer: napari.Viewer, name: str) -> str:
    names = {layer.name for layer in viewer.layers}
    n = 2
    while f"{name} [{n}]" in names:
        n += 1
    return f"{name} [{n}]"


def box_rectangles(table: dict[str, np.ndarray], lead_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Rectangle vertices (pixel edges) of each object's bounding box, with its plane index."""
    n = len(table.get("label", ()))
    planes = np.asarray(table.get("plane", np.zeros(n, np.int64)), np.int64)
    lead = np.stack(np.unravel_index(planes, lead_shape), axis=1) if lead_shape else None
    y0, x0 = table["bbox_y0"] - 0.5, table["bbox_x0"] - 0.5
    y1, x1 = table["bbox_y1"] - 0.5, table["bbox_x1"] - 0.5
    rects = []
    for i in range(n):
        corners = np.array([[y0[i], x0[i]], [y0[i], x1[i]], [y1[i], x1[i]], [y1[i], x0[i]]])
        if lead is not None:
            corners = np.hstack([np.repeat(lead[i][None], 4, axis=0), corners])
        rects.append(corners.astype(float))
    return rects


def put_boxes(
    viewer: napari.Viewer,
    name: str,
    table: dict[str, np.ndarray],
    lead_shape: tuple[int, ...],
    *,
    image: Image | None,
) -> Shapes:
    """Show Mask R-CNN boxes with their scores as the Shapes layer ``name`` (replaced).

    Up to :data:`MAX_BOX_TEXTS` boxes carry their score as text; more are coloured by score
    (:data:`BOX_COLORMAP`, 0 to 1). The scores are the layer's ``score`` feature either way.
    """
    rects = box_rectangles(table, lead_shape)
    scores = np.asarray(table.get("score", np.ones(len(rects))), float)
    ndim = len(lead_shape) + 2
    if len(rects) <= MAX_BOX_TEXTS:
        style: dict[str, Any] = {
            "edge_color": BOX_COLOR,
            "text": {
                "string": "{score:.2f}",
                "color": BOX_COLOR,
                "size": 8,
                "anchor": "upper_left",
            },
        }
    else:  # many boxes: the score is the edge colour (low = dark purple, high = yellow)
        style = {
            "edge_color": "score",
            "edge_colormap": BOX_COLORMAP,
            "edge_contrast_limits": (0, 1),
        }
    layer = Shapes(
        rects or None,
        ndim=ndim,
        shape_type="rectangle",
        name=name,
        face_color="transparent",
        edge_width=1,
        features={"score": scores},
        **style,
        **_placement(image, ndim),
    )
    return _replace_or_add(viewer, layer, _existing(viewer, name), Shapes)


def foreground_probability(probabilities: np.ndarray, outputs: list[str]) -> np.ndarray:
    """P(object) from U-Net maps ``(..., C, Y, X)`` (:func:`object_probability`), else channel 0."""
    found = object_probability(probabilities, outputs)
    return found if found is not None else np.asarray(probabilities, np.float32)[..., 0, :, :]


def put_probabilities(
    viewer: napari.Viewer, name: str, probability: np.ndarray, *, image: Image | None
) -> Image:
    """Show a probability map as the Image layer ``name`` (data replaced when it exists)."""
    existing = _existing(viewer, name)
    if isinstance(existing, Image) and existing.data.ndim == probability.ndim:
        existing.data = probability
        return existing
    layer = Image(
        probability,
        name=name,
        colormap="magma",
        contrast_limits=(0.0, 1.0),
        blending="additive",
        opacity=0.6,
        **_placement(image, probability.ndim),
    )
    return _replace_or_add(viewer, layer, existing, Image)


def remove_layer(viewer: napari.Viewer, name: str, kind: type[Layer]) -> None:
    """Remove the layer ``name`` when it exists and is of ``kind``."""
    existing = _existing(viewer, name)
    if isinstance(existing, kind):
        viewer.layers.remove(existing)


def show_prediction(
    viewer: napari.Viewer, target: ResultTarget, prediction: Any, *, probability: bool = True
) -> Labels:
    """Show a core ``Prediction``: its labels (table in ``metadata``) and probability map."""
    if probability and prediction.probabilities is not None:
        foreground = foreground_probability(prediction.probabilities, list(prediction.card.outputs))
        put_probabilities(viewer, f"{target.name} · probability", foreground, image=target.image)
    metadata = {
        "table": prediction.table,
        "model": prediction.card.name,
        "weights": str(target.weights),
        "image": target.image.name,
        "plane": target.plane,
        "params": prediction.params.to_dict(),
    }
    return put_labels(viewer, target.name, prediction.labels, image=target.image, metadata=metadata)


def show_boxes(viewer: napari.Viewer, target: ResultTarget, prediction: Any, show: bool) -> None:
    """Add (``show``) or remove the boxes layer of a Mask R-CNN prediction."""
    if not family_spec(prediction.card.family).boxes:
        return
    name = f"{target.name} · boxes"
    if show:
        lead = tuple(prediction.labels.shape[:-2])
        put_boxes(viewer, name, prediction.table, lead, image=target.image)
    else:
        remove_layer(viewer, name, Shapes)
