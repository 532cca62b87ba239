"""The "Measure" dock: per-object measurements of a Labels layer, shown on hover and saved as CSV.

Measure runs :func:`napari_cellseg.batch.measure.measure_labels` (the columns of
``cellseg batch --measure``) in a worker on a copy of the labels, with intensities from the
image the labels were made from. The table becomes the layer's ``features`` for 2-D labels,
so napari's status bar shows an object's measurements under the cursor, and "Save CSV"
writes it atomically. Editing the labels afterwards, or new data from the Segment tab, marks
the table as out of date.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    Table,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from napari_cellseg._napari import _correct_helpers as helpers
from napari_cellseg._napari._channel_row import layer_data_axes
from napari_cellseg._napari._common import layer_choices, rebuild_choices
from napari_cellseg._napari._layers import current_plane, layer_data, lead_count
from napari_cellseg._napari._measure_jobs import (
    SUMMARY_STATS,
    measure_layer_arrays,
    summary,
    summary_rows,
)
from napari_cellseg._napari._metrics_table import ROW_HEIGHT
from napari_cellseg._napari._threads import background_priority
from napari_cellseg.batch.measure import write_table_csv
from napari_cellseg.errors import CellsegError


def _measure_in_background(**inputs: Any) -> dict[str, np.ndarray]:
    """:func:`measure_layer_arrays` at background CPU priority (the viewer keeps a core)."""
    with background_priority():
        return measure_layer_arrays(**inputs)


def _summary_table() -> Table:
    """A read-only table: one row per measured quantity, median / mean / min / max."""
    from qtpy.QtWidgets import QHeaderView, QStyledItemDelegate

    table = Table(label="Summary", value={"data": [], "columns": list(SUMMARY_STATS)})
    table.read_only = True
    table.native.setItemDelegate(QStyledItemDelegate(table.native))  # show our own text
    table.native.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
    table.native.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.native.setFixedHeight(ROW_HEIGHT + 8)  # the header; rows come with a table
    return table


class MeasureWidget(Container):
    """Dock widget: measure the objects of a Labels layer and save the table as CSV."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker: Any = None
        #: The last table measured, the layer it belongs to and whether it is out of date.
        self.table: dict[str, np.ndarray] | None = None
        self._measured: Labels | None = None
        self.stale = False

        self.labels_layer = ComboBox(label="Labels", choices=layer_choices(viewer, Labels))
        self.image_layer = ComboBox(
            label="Intensities", choices=layer_choices(viewer, Image), nullable=True
        )
        self.pixel_size = FloatSpinBox(
            label="Pixel size (µm)", value=0.0, min=0.0, max=1000.0, step=0.01
        )
        self.pixel_size.tooltip = "0: unknown (no µm columns); filled from the image's scale"
        self.measure_button = PushButton(text="Measure objects")
        self.status = Label(label="Status", value="")
        self.summary = _summary_table()
        self.csv_path = FileEdit(label="CSV file", mode="w", filter="*.csv", nullable=True)
        self.save_button = PushButton(text="Save measurements to CSV", enabled=False)
        self.extend(
            [
                self.labels_layer,
                self.image_layer,
                self.pixel_size,
                self.measure_button,
                self.status,
                self.summary,
                self.csv_path,
                self.save_button,
            ]
        )
        self.status.native.setWordWrap(True)
        self.native.layout().addStretch(1)
        self.labels_layer.changed.connect(self._on_labels_changed)
        self.image_layer.changed.connect(self._on_image_changed)
        self.measure_button.clicked.connect(self.measure)
        self.save_button.clicked.connect(self.save_csv)
        events = viewer.layers.events
        events.inserted.connect(lambda e: self._watch(e.value))
        events.removed.connect(self._on_removed)
        events.reordered.connect(self._refresh_choices)
        for layer in viewer.layers:
            layer.events.name.connect(self._refresh_choices)
        self._on_labels_changed(self.labels_layer.value)

    # -- layers -----------------------------------------------------------------------------
    def _refresh_choices(self, _event: Any = None) -> None:
        rebuild_choices(self.labels_layer)
        rebuild_choices(self.image_layer)

    def _watch(self, layer: Any) -> None:
        layer.events.name.connect(self._refresh_choices)
        self._refresh_choices()

    def _on_removed(self, event: Any) -> None:
        event.value.events.name.disconnect(self._refresh_choices)
        if event.value is self._measured:
            self._forget()
        self._refresh_choices()

    def _on_labels_changed(self, layer: Labels | None) -> None:
        if layer is None:
            return
        images = [im for im in self.image_layer.choices if im is not None]
        image = helpers.matching_image(images, layer)
        if image is not None:
            self.image_layer.value = image
        # Save offers the table of the layer shown (back on the measured one: offered again)
        self.save_button.enabled = layer is self._measured and self.table is not None

    def _on_image_changed(self, image: Image | None) -> None:
        if image is None:
            return
        scale_y, scale_x = (float(s) for s in image.scale[-2:])  # an RGB axis has no scale
        if abs(scale_y - 1.0) > 1e-9 or abs(scale_x - 1.0) > 1e-9:  # calibrated: use it
            self.pixel_size.value = float(np.sqrt(scale_y * scale_x))

    # -- measuring --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a measurement is running."""
        return self._worker is not None

    def _inputs(self) -> dict[str, Any]:
        layer = self.labels_layer.value
        if layer is None:
            raise CellsegError("no labels layer: segment an image or open a label image first")
        image = self.image_layer.value
        inputs: dict[str, Any] = {
            "labels": np.array(layer.data, copy=True),  # the user may paint meanwhile
            "image": None,
            "axes": None,
            "labels_name": layer.name,
            "pixel_size_um": self.pixel_size.value or None,
        }
        if image is not None:
            data = layer_data(image)
            axes = layer_data_axes(image)  # the layer's channel axis, as the Segment tab
            plane = layer.metadata.get("plane") if isinstance(layer.metadata, dict) else None
            if plane is None and lead_count(axes) and np.ndim(layer.data) == 2:
                plane = current_plane(image, self._viewer, axes)
            if "C" in axes[:-1]:  # channels last: the T/Z axes lead, as the planes index them
                data = np.moveaxis(np.asarray(data), axes.index("C"), -1)
                axes = axes.replace("C", "") + "C"
            inputs.update(image=data, axes=axes, plane=plane, image_name=image.name)
        return inputs

    def measure(self) -> Any:
        """Measure the chosen layer in a worker; returns the worker (None if not started)."""
        if self.running:
            return None
        try:
            inputs = self._inputs()
        except CellsegError as exc:
            self._fail(str(exc))
            return None
        layer = self.labels_layer.value
        self.status.value = f"Measuring the objects of {layer.name!r}…"
        self.measure_button.enabled = self.save_button.enabled = False
        start = time.perf_counter()
        worker = create_worker(
            _measure_in_background, _start_thread=False, _ignore_errors=True, **inputs
        )
        worker.returned.connect(lambda table: self._on_measured(layer, table, start))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()
        return worker

    def _on_measured(self, layer: Labels, table: dict[str, np.ndarray], start: float) -> None:
        self._forget()
        self.table, self._measured, self.stale = table, layer, False
        if layer in self._viewer.layers and np.ndim(layer.data) == 2:
            layer.features = {"index": table["label"], **table}  # hover shows an object's row
        layer.events.paint.connect(self._on_painted)  # edits
        layer.events.data.connect(self._on_painted)  # new data (Run again, new thresholds)
        seconds = time.perf_counter() - start
        self.status.value = f"{layer.name}: {summary(table)} (measured in {seconds:.1f} s)"
        names, rows = summary_rows(table)
        self.summary.value = {"data": rows, "index": names, "columns": list(SUMMARY_STATS)}
        self.summary.native.setFixedHeight((len(names) + 1) * ROW_HEIGHT + 8)  # no scrolling
        self.save_button.enabled = True

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, CellsegError):
            self._fail(str(exc))
        else:
            self._fail(f"measuring failed ({type(exc).__name__}: {exc})")

    def _on_finished(self) -> None:
        self._worker = None
        self.measure_button.enabled = True

    def _on_painted(self, _event: Any = None) -> None:
        if not self.stale:
            self.stale = True
            self.status.value += " — the labels changed since: measure again"

    def _forget(self) -> None:
        if self._measured is not None:
            self._measured.events.paint.disconnect(self._on_painted)
            self._measured.events.data.disconnect(self._on_painted)
        self.table, self._measured, self.stale = None, None, False
        self.save_button.enabled = False
        self.summary.value = {"data": [], "columns": list(SUMMARY_STATS)}

    def _fail(self, message: str) -> None:
        self.status.value = message
        show_error(message)

    # -- saving -----------------------------------------------------------------------------
    def save_csv(self) -> Path | None:
        """Write the last table to the chosen CSV file (atomically); returns its path."""
        try:
            if self.table is None:
                raise CellsegError("nothing measured yet: press Measure objects first")
            if self.stale:
                raise CellsegError(
                    "the labels changed after they were measured: press Measure objects again"
                )
            path = self.csv_path.value
            if path is None or str(path) in ("", "."):
                raise CellsegError("choose a CSV file to save the measurements to")
            path = Path(path)
            if path.is_dir():
                raise CellsegError(f"{path} is a folder: choose a file name ending in .csv")
            if path.suffix.lower() != ".csv":
                path = path.with_name(path.name + ".csv")
            written = write_table_csv(path, self.table)
        except (CellsegError, OSError) as exc:
            self._fail(f"could not save the measurements: {exc}")
            return None
        n = len(self.table["label"])
        show_info(f"{n} objects' measurements saved to {written}")
        self.status.value = f"{self._measured.name}: {summary(self.table)}; saved to {written}"
        return written
