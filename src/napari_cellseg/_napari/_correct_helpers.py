"""Layer-level helpers of the Correct dock: undoable writes, edited ids, coordinates."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import Container
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.notifications import show_error

from napari_cellseg._napari._common import CONFIG_ENV
from napari_cellseg.errors import CellsegError
from napari_cellseg.labels.editing import label_changes
from napari_cellseg.training.regions import Box, edited_region, object_boxes, rectangle_region

log = logging.getLogger(__name__)

NAME_SEPARATOR = " · "  # segmentation layers are named "<image> · <model>"


def cache_dir() -> Path:
    """Where autosaves go without a training-set folder (``$NAPARI_CELLSEG_CONFIG_DIR`` first)."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-cellseg", appauthor=False))


def apply_labels(layer: Labels, after: np.ndarray, region: tuple[slice, ...] | None = None) -> int:
    """Write the pixels where `after` differs from the layer as ONE undoable step.

    Goes through ``Labels.data_setitem``, which records the change in the layer's undo
    history and emits ``layer.events.paint`` like a brush stroke. Returns the pixel count.
    """
    before = np.asarray(layer.data)
    if after.dtype != before.dtype and after.max(initial=0) > np.iinfo(before.dtype).max:
        raise CellsegError(
            f"label {int(after.max())} does not fit the layer's {before.dtype} data; "
            "relabel sequentially first"
        )
    indices, values = label_changes(before, after, region)
    if values.size:
        with layer.block_history():
            layer.data_setitem(indices, values.astype(before.dtype, copy=False))
    return int(values.size)


def ids_in_history_item(item: Any) -> set[int]:
    """Object ids touched by one undo-history item (the value of a ``paint`` event).

    An item is a list of atoms: ``(indices, old_values, new_values)`` tuples written by
    ``data_setitem``, or mask atoms (``old_values``, ``new_value``) written by the brush,
    fill and polygon tools.
    """
    ids: set[int] = set()
    for atom in item or ():
        if hasattr(atom, "new_value"):
            old, new = atom.old_values, atom.new_value
        else:
            _, old, new = atom
        for values in (old, new):
            ids.update(int(v) for v in np.unique(np.asarray(values)))
    ids.discard(0)
    return ids


def _axis_extent(index: Any) -> tuple[int, int] | None:
    """``(start, stop)`` of one axis of an index (slice, int or index array); None if empty."""
    if isinstance(index, slice):
        return (index.start or 0, index.stop) if index.stop is not None else None
    values = np.asarray(index)
    if values.size == 0:
        return None
    return int(values.min()), int(values.max()) + 1


def boxes_in_history_item(item: Any) -> list[Box]:
    """The bounding box of every atom of one undo-history item (see ``ids_in_history_item``)."""
    boxes: list[Box] = []
    for atom in item or ():
        key = atom.slice_key if hasattr(atom, "slice_key") else atom[0]
        key = key if isinstance(key, tuple) else (key,)
        extents = [_axis_extent(k) for k in key]
        if extents and all(e is not None for e in extents):
            boxes.append(tuple(extents))  # type: ignore[arg-type]
    return boxes


def plane_boxes(boxes: list[Box], lead: tuple[int, ...]) -> list[Box]:
    """The 2-D (last two axes) parts of ``boxes`` that touch the plane at index ``lead``.

    >>> plane_boxes([((0, 1), (2, 4), (5, 6)), ((1, 2), (0, 1), (0, 1))], (0,))
    [((2, 4), (5, 6))]
    """
    out = []
    for box in boxes:
        if len(box) < 2 or len(box) - 2 != len(lead):
            continue
        if all(start <= i < stop for (start, stop), i in zip(box[:-2], lead, strict=True)):
            out.append(box[-2:])
    return out


CHECKED_WHOLE, CHECKED_EDITS, CHECKED_RECTANGLES = (
    "whole image",
    "around my edits",
    "drawn rectangles",
)
"""How much of an image the user checked (the Correct dock's "Checked" choices)."""


def checked_region(
    mode: str,
    labels: np.ndarray,
    *,
    edited_ids: set[int],
    edited_boxes: list[Box],
    margin: int,
    rectangles: list[np.ndarray] | None = None,
) -> np.ndarray | None:
    """The region mask (uint8) to store with a 2-D plane, or None for the whole image.

    ``CHECKED_EDITS``: the boxes of the edited objects still present and of every edit
    (deleted objects included), grown by ``margin`` px. ``CHECKED_RECTANGLES``: the pixels
    inside ``rectangles`` (corner points in the plane's Y, X). Error if that is nothing.
    """
    if mode == CHECKED_WHOLE:
        return None
    if mode == CHECKED_EDITS:
        boxes = object_boxes(labels, edited_ids) + list(edited_boxes)
        if not boxes:
            raise CellsegError(
                "no edits on this plane: correct some objects first, or set Checked to "
                f"'{CHECKED_WHOLE}'"
            )
        return edited_region(labels.shape, boxes, margin)
    region = rectangle_region(labels.shape, rectangles or [])
    if not region.any():
        raise CellsegError(
            f"no rectangle over the image in '{REGION_LAYER}': draw the part you checked, or "
            f"set Checked to '{CHECKED_WHOLE}'"
        )
    return region


REGION_LAYER = "checked region"


def region_layer(viewer: Any, ndim: int) -> Shapes:
    """The Shapes layer :data:`REGION_LAYER` for checked rectangles (added when missing)."""
    if REGION_LAYER in viewer.layers:
        return viewer.layers[REGION_LAYER]
    shapes = viewer.add_shapes(
        ndim=ndim, name=REGION_LAYER, edge_color="yellow", face_color="transparent", edge_width=2
    )
    shapes.mode = "add_rectangle"
    return shapes


def rectangles_on(shapes: Shapes | None, labels: Labels) -> list[np.ndarray]:
    """Each shape's vertices in the data coordinates (last two axes) of ``labels``."""
    if shapes is None:
        return []
    out = []
    for vertices in shapes.data:
        points = [data_point(labels, shapes.data_to_world(v)) for v in np.asarray(vertices)]
        out.append(np.asarray(points, float)[:, -2:])
    return out


def parse_ids(text: str) -> list[int]:
    """Ids typed as ``"3, 7 12"``; error on anything that is not a positive integer."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    bad = [p for p in parts if not p.isdigit() or int(p) == 0]
    if bad:
        raise CellsegError(f"not an object id: {', '.join(bad)}; type ids like '3, 7, 12'")
    return [int(p) for p in parts]


def format_ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


def data_point(layer: Any, world: Any) -> tuple[float, ...]:
    """A world position as data coordinates of `layer` (the layer's own axes only)."""
    world = np.asarray(world, dtype=float)
    ndim = layer.ndim
    return tuple(float(c) for c in layer.world_to_data(world[-ndim:])[-ndim:])


def seeds_layer(viewer: Any, name: str, ndim: int) -> Points:
    """The Points layer `name` for split seeds (added, in add mode, when missing)."""
    if name in viewer.layers:
        return viewer.layers[name]
    points = viewer.add_points(np.empty((0, ndim)), name=name, size=6, face_color="yellow")
    points.mode = "add"
    return points


def seeds_of(points: Points, labels: Labels) -> list[tuple[float, ...]]:
    """The points of `points` in the data coordinates of `labels`."""
    return [data_point(labels, points.data_to_world(p)) for p in np.asarray(points.data)]


def matching_image(layers: list[Image], labels: Labels) -> Image | None:
    """The image a labels layer was made from: longest name prefix, else same shape."""
    named = [
        im
        for im in layers
        if labels.name == im.name or labels.name.startswith(im.name + NAME_SEPARATOR)
    ]
    if named:
        return max(named, key=lambda im: len(im.name))
    shape = tuple(np.shape(labels.data))
    return next((im for im in layers if spatial_shape(im) == shape), None)


def spatial_shape(image: Image) -> tuple[int, ...]:
    shape = tuple(np.shape(image.data))
    return shape[:-1] if image.rgb else shape


def plane_lead(viewer: Any, labels: Labels) -> tuple[int, ...]:
    """The index, on the labels' leading (non-YX) axes, of the plane on screen."""
    ndim = np.ndim(labels.data)
    step = tuple(int(s) for s in viewer.dims.current_step)
    return step[-ndim:][: ndim - 2] if ndim > 2 else ()


def training_plane(viewer: Any, labels: Labels, image: Image) -> tuple[str, np.ndarray, np.ndarray]:
    """Name, image and labels of the 2-D plane to add to a training set (the one on screen)."""
    step = tuple(int(s) for s in viewer.dims.current_step)
    data, name = np.asarray(labels.data), image.name
    if data.ndim > 2:
        lead = plane_lead(viewer, labels)
        data, name = data[lead], name + "".join(f"_{i}" for i in lead)
    img = np.asarray(image.data)
    extra = len(spatial_shape(image)) - 2
    if extra > 0:
        img = img[tuple(step[-(extra + 2) :][:extra])]
    return name, img, data


def camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def centre_on(viewer: Any, layer: Any, point: tuple[float, ...]) -> None:
    """Move the view so `point` (data coordinates of `layer`) is at the centre."""
    world = np.asarray(layer.data_to_world(point), dtype=float)
    offset = viewer.dims.ndim - world.size
    displayed = [d - offset for d in viewer.dims.displayed if d >= offset]
    for axis in range(world.size):
        if axis not in displayed:
            viewer.dims.set_point(axis + offset, world[axis])
    camera(viewer).center = tuple(world[displayed])


def source_path(layer: Any) -> str | None:
    path = getattr(getattr(layer, "source", None), "path", None)
    return str(path) if path else None


def row(*widgets: Any, label: str = " ") -> Container:
    """Widgets side by side; ``label`` is shown for the whole row in the parent's form."""
    box = Container(widgets=widgets, layout="horizontal", labels=False, label=label)
    box.margins = (0, 0, 0, 0)
    return box


class ClickPicker:
    """Calls ``on_click(world_position)`` for mouse presses on one layer at a time."""

    def __init__(self, on_click: Callable[[Any], None]) -> None:
        self._on_click = on_click
        self.layer: Labels | None = None

    def _callback(self, _layer: Labels, event: Any) -> None:
        if event.type == "mouse_press":
            self._on_click(event.position)

    def attach(self, layer: Labels | None) -> None:
        """Listen on `layer` (None: stop listening); the layer goes to pan/zoom mode."""
        if self.layer is not None and self._callback in self.layer.mouse_drag_callbacks:
            self.layer.mouse_drag_callbacks.remove(self._callback)
        self.layer = layer
        if layer is not None:
            layer.mode = "pan_zoom"  # a click must pick, not paint
            layer.mouse_drag_callbacks.append(self._callback)

    def attached_to(self, layer: Labels) -> bool:
        return self._callback in layer.mouse_drag_callbacks


def reporting(method: Callable[..., Any]) -> Callable[..., Any]:
    """Show a failed dock action as a notification instead of a traceback dialog."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except CellsegError as exc:
            show_error(str(exc))
        except Exception as exc:  # a bug must not take the dock down
            log.exception("correct action failed")
            show_error(f"{method.__name__.strip('_')} failed ({type(exc).__name__}: {exc})")
        return None

    return wrapper
