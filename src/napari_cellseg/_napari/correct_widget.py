"""The "Correct" dock: edit instance labels (undoably) and add them to a training set.

Below the edits, "Correct next" (:mod:`._correct_next`) ranks a folder's images by the
model's doubt and jumps to the next doubtful object.

Every edit is written with ``Labels.data_setitem`` inside ``block_history``, so it is one
step of the layer's own undo history (Ctrl+Z / ``layer.undo()``). Object ids the user
changes, with this dock or with napari's brush, fill, polygon and eraser, are collected per
layer from ``layer.events.paint`` (with the boxes they touched); each edit also schedules a
debounced autosave. "Checked" says how much of the image the user vouches for: the whole
image, the surroundings of their edits, or rectangles drawn in a Shapes layer; the part is
stored as ``regions/<name>.tif`` and training ignores the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_info

from napari_cellseg._napari import _correct_helpers as helpers
from napari_cellseg._napari._common import layer_choices, rebuild_choices
from napari_cellseg._napari._correct_next import CorrectNextPanel
from napari_cellseg._napari._edit_tracker import EditTracker
from napari_cellseg._napari._export_action import (
    EXPORT_CHOICES,
    ask_export_path,
    default_export_path,
    export_layer,
)
from napari_cellseg._napari._session import session_for
from napari_cellseg.errors import CellsegError
from napari_cellseg.labels import editing
from napari_cellseg.training.corrected_set import add_to_training_set

SEEDS_LAYER = "split seeds"
DELETE_KEY = "d"


class CorrectWidget(Container):
    """Dock widget to correct a labels layer and add it to a training set."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._picker = helpers.ClickPicker(self.pick_at)
        self.tracker = EditTracker(self.autosave_folder, parent=self.native)
        self.tracker.changed.connect(self._show_edited)

        self.labels_layer = ComboBox(label="Labels", choices=layer_choices(viewer, Labels))
        self.image_layer = ComboBox(
            label="Image", choices=layer_choices(viewer, Image), nullable=True
        )
        self.delete_button = PushButton(text=f"Delete selected label (key '{DELETE_KEY}')")
        self.merge_ids = LineEdit(label="Merge ids", value="")
        self.pick = CheckBox(text="pick by clicking")
        self.merge_button = PushButton(text="Merge")
        self.split_button = PushButton(text=f"Split at seeds ('{SEEDS_LAYER}' points)")
        self.fill_button = PushButton(text="Fill holes")
        self.min_size = SpinBox(value=20, min=0, max=10**7, label="Min size (px)")
        self.remove_button = PushButton(text="Remove smaller")
        self.relabel_button = PushButton(text="Relabel sequentially")
        self.next_button = PushButton(text="Next free label")
        self.jump_id = SpinBox(value=1, min=1, max=2**31 - 1, label="Object id")
        self.jump_button = PushButton(text="Jump to object")
        self.edited_info = Label(label="Edited", value="no objects edited")
        folder = self._session.training_set
        self.folder = FileEdit(label="Training set", mode="d", nullable=True, value=folder)
        self.checked = ComboBox(
            label="Checked",
            choices=[helpers.CHECKED_WHOLE, helpers.CHECKED_EDITS, helpers.CHECKED_RECTANGLES],
            value=helpers.CHECKED_WHOLE,
            tooltip="The part of the image whose labels you checked; training ignores the rest",
        )
        self.margin = SpinBox(
            value=24, min=0, max=10**5, label="Margin (px)",
            tooltip="With 'around my edits': how far around each edit you checked the labels",
        )  # fmt: skip
        self.add_button = PushButton(text="Add to training set")
        self.export_format = ComboBox(choices=list(EXPORT_CHOICES), label="Export as")
        self.export_button = PushButton(text="Export…")
        layers = lambda: (self.labels_layer.value, self.image_layer.value)  # noqa: E731
        self.correct_next = CorrectNextPanel(viewer, self._session, layers)
        row = helpers.row
        self.extend(
            [
                self.labels_layer,
                self.image_layer,
                self.delete_button,
                row(self.merge_ids, self.pick, self.merge_button, label="Merge ids"),
                self.split_button,
                row(self.fill_button, self.relabel_button),
                row(self.min_size, self.remove_button, label="Min size (px)"),
                self.next_button,
                row(self.jump_id, self.jump_button, label="Object id"),
                self.edited_info,
                self.folder,
                self.checked,
                self.margin,
                self.add_button,
                row(self.export_format, self.export_button, label="Export as"),
                self.correct_next,
            ]
        )  # fmt: skip
        self.native.layout().addStretch(1)

        self.labels_layer.changed.connect(self._on_labels_changed)
        self.pick.changed.connect(self._update_picking)
        for button, action in (
            (self.delete_button, self.delete_selected), (self.merge_button, self.merge),
            (self.split_button, self.split), (self.fill_button, self.fill_holes),
            (self.remove_button, self.remove_small), (self.relabel_button, self.relabel),
            (self.next_button, self.next_free_label), (self.jump_button, self.jump_to),
            (self.add_button, self.add_to_training_set), (self.export_button, self.export),
        ):  # fmt: skip
            button.changed.connect(lambda _v=None, act=action: act())
        self.folder.changed.connect(self._on_folder_changed)
        self.checked.changed.connect(self._on_checked_changed)
        self._session.training_set_changed.connect(self._on_session_folder)
        events = viewer.layers.events
        events.inserted.connect(lambda e: self._watch(e.value))
        events.removed.connect(lambda e: self._unwatch(e.value))
        events.reordered.connect(self._refresh_choices)
        viewer.layers.selection.events.active.connect(self._on_active)
        for layer in viewer.layers:
            self._watch(layer, refresh=False)
        self._on_labels_changed(self.labels_layer.value)

    # -- layers -----------------------------------------------------------------------------
    def _refresh_choices(self, _event: Any = None) -> None:
        rebuild_choices(self.labels_layer)
        rebuild_choices(self.image_layer)

    def _watch(self, layer: Any, refresh: bool = True) -> None:
        layer.events.name.connect(self._refresh_choices)
        if isinstance(layer, Labels):
            self.tracker.watch(layer)
            layer.bind_key(DELETE_KEY, self.delete_under_cursor, overwrite=True)
        if refresh:
            self._refresh_choices()

    def _unwatch(self, layer: Any) -> None:
        layer.events.name.disconnect(self._refresh_choices)
        if isinstance(layer, Labels):
            self.tracker.unwatch(layer)
        self._refresh_choices()

    def _on_active(self, event: Any) -> None:
        if isinstance(event.value, Labels) and event.value in self.labels_layer.choices:
            self.labels_layer.value = event.value

    def _on_labels_changed(self, layer: Labels | None) -> None:
        if layer is not None:
            images = [im for im in self.image_layer.choices if im is not None]
            image = helpers.matching_image(images, layer)
            if image is not None:
                self.image_layer.value = image
        self._update_picking()
        self._show_edited()

    def _layer(self) -> Labels:
        layer = self.labels_layer.value
        if layer is None:
            raise CellsegError("no labels layer: segment an image or open a label image first")
        return layer

    # -- edited ids and autosave --------------------------------------------------------------
    def edited_ids(self, layer: Labels | None = None) -> set[int]:
        """Object ids changed in `layer` (default: the chosen one) since it was opened."""
        return self.tracker.edited_ids(layer or self.labels_layer.value)

    def _show_edited(self, layer: Labels | None = None) -> None:
        if layer is not None and layer is not self.labels_layer.value:
            return
        ids = sorted(self.edited_ids())
        shown = helpers.format_ids(ids[:12]) + (" …" if len(ids) > 12 else "")
        self.edited_info.value = f"{len(ids)}: {shown}" if ids else "no objects edited"

    def autosave_folder(self) -> Path:
        """The folder whose ``.autosave/`` receives autosaves."""
        return self._session.training_set or helpers.cache_dir()

    def autosave_now(self) -> None:
        """Autosave the edited layers now instead of after the pause."""
        self.tracker.autosave_now()

    # -- edits --------------------------------------------------------------------------------
    def _apply(self, after: np.ndarray, region: tuple[slice, ...] | None = None) -> int:
        return helpers.apply_labels(self._layer(), after, region)

    @helpers.reporting
    def delete_under_cursor(self, layer: Labels | None = None) -> None:
        """Delete the object under the mouse cursor (bound to key 'd' on labels layers)."""
        layer = layer or self._layer()
        point = helpers.data_point(layer, self._viewer.cursor.position)
        self._delete(layer, editing.object_at(np.asarray(layer.data), point))

    @helpers.reporting
    def delete_selected(self) -> None:
        """Delete the object whose id is the layer's selected label."""
        layer = self._layer()
        self._delete(layer, int(layer.selected_label))

    def _delete(self, layer: Labels, object_id: int) -> None:
        if object_id == 0:
            raise CellsegError("no object there: point at an object (not the background)")
        data = np.asarray(layer.data)
        region = editing.objects_bbox(data, [object_id])
        helpers.apply_labels(layer, editing.delete_objects(data, [object_id]), region)

    @helpers.reporting
    def merge(self) -> None:
        """Merge the ids typed (or picked) in "Merge ids" into the smallest one."""
        data = np.asarray(self._layer().data)
        ids = helpers.parse_ids(self.merge_ids.value)
        merged, kept = editing.merge_objects(data, ids)
        self._apply(merged, editing.objects_bbox(data, ids))
        self.merge_ids.value = ""
        self._layer().selected_label = kept

    def _update_picking(self, _value: Any = None) -> None:
        self._picker.attach(self.labels_layer.value if self.pick.value else None)

    @helpers.reporting
    def pick_at(self, world_position: Any) -> None:
        """Add the object at a world position to "Merge ids"."""
        layer = self._layer()
        point = helpers.data_point(layer, world_position)
        object_id = editing.object_at(np.asarray(layer.data), point)
        ids = helpers.parse_ids(self.merge_ids.value) if self.merge_ids.value.strip() else []
        if object_id and object_id not in ids:
            self.merge_ids.value = helpers.format_ids([*ids, object_id])

    @helpers.reporting
    def split(self) -> None:
        """Split the object under the first seed into one part per seed."""
        layer = self._layer()
        points = helpers.seeds_layer(self._viewer, SEEDS_LAYER, layer.ndim)
        seeds = helpers.seeds_of(points, layer)
        if len(seeds) < 2:
            show_info(f"Click two or more seeds on one object into '{SEEDS_LAYER}', then Split")
            return
        data = np.asarray(layer.data)
        object_id = editing.object_at(data, seeds[0])
        image = self._image_data(data.shape)
        after, _ = editing.split_object(data, object_id, seeds, image=image)
        self._apply(after, editing.objects_bbox(data, [object_id]))
        points.data = np.empty((0, points.ndim))
        self._viewer.layers.selection.active = layer

    def _image_data(self, shape: tuple[int, ...]) -> np.ndarray | None:
        image = self.image_layer.value
        if image is None or helpers.spatial_shape(image) != shape:
            return None
        return np.asarray(image.data)

    @helpers.reporting
    def fill_holes(self) -> None:
        """Fill the holes of every object."""
        self._apply(editing.fill_holes(np.asarray(self._layer().data)))

    @helpers.reporting
    def remove_small(self) -> None:
        """Delete objects smaller than "Min size"."""
        after, removed = editing.remove_small(np.asarray(self._layer().data), self.min_size.value)
        self._apply(after)
        show_info(f"Removed {len(removed)} object(s) smaller than {self.min_size.value} px")

    @helpers.reporting
    def relabel(self) -> None:
        """Renumber the objects 1..N."""
        self._apply(editing.relabel_sequential(np.asarray(self._layer().data)))

    @helpers.reporting
    def next_free_label(self) -> None:
        """Select an unused id for painting a new object."""
        layer = self._layer()
        layer.selected_label = editing.next_free_label(np.asarray(layer.data))
        layer.mode = "paint"

    @helpers.reporting
    def jump_to(self) -> None:
        """Centre the view on the object "Object id" and select it."""
        layer, object_id = self._layer(), int(self.jump_id.value)
        helpers.centre_on(
            self._viewer, layer, editing.object_bbox_centre(np.asarray(layer.data), object_id)
        )
        layer.selected_label = object_id

    # -- training set -------------------------------------------------------------------------
    def _on_folder_changed(self, value: Path | None) -> None:
        self._session.training_set = value or None

    def _on_session_folder(self, value: Path | None) -> None:
        if self.folder.value != value:
            self.folder.value = value

    @helpers.reporting
    def add_to_training_set(self) -> None:
        """Save the chosen image and the corrected labels into the training-set folder."""
        layer, image = self._layer(), self.image_layer.value
        folder = self.folder.value
        if not folder or str(folder) in ("", "."):
            raise CellsegError("choose a training-set folder first")
        if image is None:
            raise CellsegError("choose the image the labels belong to")
        name, img, labels = helpers.training_plane(self._viewer, layer, image)
        prediction = self._session.predictions.get(layer.name)
        card = getattr(prediction, "card", None)
        ids = self.edited_ids(layer)
        region = self.checked_region(layer, labels)
        image_path, _ = add_to_training_set(
            folder, name, img, labels, source=helpers.source_path(image),
            edited_ids=sorted(ids), model=getattr(card, "name", None), region=region,
        )  # fmt: skip
        self._session.training_set = Path(folder)
        n = int(np.count_nonzero(np.unique(labels)))
        part = "" if region is None else f"; checked region {region.mean():.0%} of the image"
        show_info(f"Added {image_path.stem} to {folder} ({n} objects{part})")

    # -- export -------------------------------------------------------------------------------
    @helpers.reporting
    def export(self, path: Path | None = None) -> Path | None:
        """Export the labels as QuPath GeoJSON or a Fiji ROI set (asks where unless `path`)."""
        layer = self._layer()
        fmt = EXPORT_CHOICES[self.export_format.value]
        path = path or ask_export_path(self.native, default_export_path(layer, fmt), fmt)
        if path is None:
            return None
        written = export_layer(layer, path, fmt, self.image_layer.value)
        n = int(np.count_nonzero(np.unique(np.asarray(layer.data))))
        show_info(f"Exported {n} objects of {layer.name} to {written}")
        return written

    def checked_region(self, layer: Labels, labels: np.ndarray) -> np.ndarray | None:
        """The region mask of the plane on screen that "Checked" asks for (None: whole)."""
        lead = helpers.plane_lead(self._viewer, layer)
        shapes = None
        if helpers.REGION_LAYER in self._viewer.layers:
            shapes = self._viewer.layers[helpers.REGION_LAYER]
        return helpers.checked_region(
            self.checked.value,
            labels,
            edited_ids=self.edited_ids(layer),
            edited_boxes=helpers.plane_boxes(self.tracker.edited_boxes(layer), lead),
            margin=int(self.margin.value),
            rectangles=helpers.rectangles_on(shapes, layer),
        )

    def _on_checked_changed(self, value: str) -> None:
        if value == helpers.CHECKED_RECTANGLES and self.labels_layer.value is not None:
            helpers.region_layer(self._viewer, self.labels_layer.value.ndim)
            show_info(f"Draw rectangles over the part you checked in '{helpers.REGION_LAYER}'")
