"""The "Evaluate" dock: score predictions against ground truth, compare two models, export CSV.

Labels layers (or folders of label images matched by name) are scored with the core metrics
in a worker; "Compare models" segments one image layer (or a folder of images) with two
weight files, scores both against the ground truth, shows both columns side by side and adds
both results as Labels layers. "Tune" chooses model A's thresholds on the same labelled
images (``cellseg tune``); a tuned copy can be saved and used at once. Nothing heavy runs on
the GUI thread: folders are read in the worker, one image at a time, with a progress bar and
a Cancel button.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from napari_cellseg._napari._channel_row import layer_channels
from napari_cellseg._napari._common import (
    WEIGHT_FILTER,
    ThrottledProgress,
    layer_choices,
    track_task,
)
from napari_cellseg._napari._diameter_row import physical_pixel_size
from napari_cellseg._napari._evaluate_jobs import (
    Comparison,
    EvalImage,
    Tuned,
    evaluate_labels,
    folder_images,
    iter_compare,
    iter_evaluate_folders,
    iter_tune,
    save_tuned_copy,
)
from napari_cellseg._napari._layers import put_labels, result_name
from napari_cellseg._napari._metrics_table import (
    fill_metrics_table,
    make_metrics_table,
    write_metrics_csv,
)
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.segment_widget import config_dir
from napari_cellseg.device import available_devices
from napari_cellseg.diameters import parse_diameter
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Progress

LAYER_WIDGETS = ("prediction_layer", "ground_truth_layer", "image_layer")
FOLDER_WIDGETS = ("prediction_folder", "ground_truth_folder", "image_folder")
MODELS_HEADER = "Compare two models, tune model A"


class EvaluateWidget(Container):
    """Dock widget with a metrics table for predictions and for two-model comparisons."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._worker: Any = None
        #: The table's columns: title -> metrics (what Export writes).
        self.results: dict[str, dict[str, Any]] = {}

        def folder(name: str, label: str) -> FileEdit:
            return FileEdit(name=name, label=label, mode="d", nullable=True, visible=False)

        def weights(name: str, label: str) -> FileEdit:
            return FileEdit(name=name, label=label, mode="r", filter=WEIGHT_FILTER, nullable=True)

        self.extend(
            [
                ComboBox(name="source", label="Source", choices=["layers", "folders"]),
                ComboBox(
                    name="prediction_layer",
                    label="Prediction",
                    choices=layer_choices(viewer, Labels),
                ),
                ComboBox(
                    name="ground_truth_layer", label="Truth", choices=layer_choices(viewer, Labels)
                ),
                folder("prediction_folder", "Predictions"),
                folder("ground_truth_folder", "Truth"),
                PushButton(name="evaluate", text="Evaluate"),
                Label(name="compare_header", label=" ", value=f"<b>{MODELS_HEADER}</b>"),
                weights("weights_a", "Model A"),
                weights("weights_b", "Model B"),
                ComboBox(name="image_layer", label="Image", choices=layer_choices(viewer, Image)),
                folder("image_folder", "Images"),
                ComboBox(name="device", label="Device", choices=available_devices()),
                PushButton(name="compare", text="Compare models"),
                PushButton(name="tune", text="Tune model A's thresholds on these images"),
                PushButton(name="save_tuned", text="Save tuned copy and use it", enabled=False),
                ProgressBar(name="progress", label="Progress", min=0, max=1, value=0),
                PushButton(name="cancel", text="Cancel", enabled=False),
                Label(name="status", label="Status", value=""),
                make_metrics_table("table"),
                FileEdit(
                    name="export_path", label="CSV file", mode="w", filter="*.csv", nullable=True
                ),
                PushButton(name="export", text="Export table to CSV"),
            ]
        )
        self.status.native.setWordWrap(True)
        self.native.layout().addStretch(1)
        self.source.changed.connect(self._on_source)
        self.evaluate.clicked.connect(self.run_evaluation)
        self.compare.clicked.connect(self.run_comparison)
        self.tune.clicked.connect(self.run_tuning)
        self.save_tuned.clicked.connect(self.save_tuned_model)
        self._tuned: Tuned | None = None
        self.cancel.clicked.connect(self.cancel_run)
        self._progress = ThrottledProgress(self.progress, self.status, self.native)
        self.export.clicked.connect(self.export_csv)
        events = viewer.layers.events
        for signal in (events.inserted, events.removed, events.reordered):
            signal.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self._refresh_choices)

    # -- layers and modes -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether an evaluation or comparison is running."""
        return self._worker is not None

    def _on_layers_changed(self, event: Any) -> None:
        if event.type == "inserted":
            event.value.events.name.connect(self._refresh_choices)
        self._refresh_choices()

    def _refresh_choices(self, _event: Any = None) -> None:
        for name in LAYER_WIDGETS:
            self[name].reset_choices()

    def _on_source(self, value: str) -> None:
        for name in LAYER_WIDGETS:
            self[name].visible = value == "layers"
        for name in FOLDER_WIDGETS:
            self[name].visible = value == "folders"

    def _require(self, name: str, what: str) -> Any:
        value = self[name].value
        if value is None:
            raise CellsegError(f"choose {what} first")
        return value

    # -- running ----------------------------------------------------------------------------
    def _launch(self, func: Callable, *args: Any, on_done: Callable[[Any], None]) -> None:
        worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(on_done)
        worker.errored.connect(self._on_error)
        if hasattr(worker, "yielded"):
            worker.yielded.connect(self._on_progress)
            worker.aborted.connect(self._on_cancelled)
        worker.finished.connect(self._on_worker_done)
        self._worker = worker
        self._set_running(True, cancellable=hasattr(worker, "yielded"))
        self._progress.record(0, 1, None)  # shown at once: the timer starts next
        self._progress.start()
        track_task(self._viewer, worker, "evaluating segmentations")
        worker.start()

    def _on_progress(self, event: Progress) -> None:
        self._progress.record(event.done, event.total, event.message or None)

    def cancel_run(self) -> None:
        """Stop the running evaluation or comparison at its next step (nothing is added)."""
        if self._worker is not None and hasattr(self._worker, "quit"):
            self.cancel.enabled = False
            self._progress.record(None, None, "cancelling…")
            self._worker.quit()

    def _on_cancelled(self) -> None:
        self._progress.record(None, None, "cancelled: nothing was added")

    def _on_worker_done(self) -> None:
        self._worker = None
        self._progress.stop()
        self._set_running(False)

    def _set_running(self, running: bool, *, cancellable: bool = False) -> None:
        """Buttons while a job runs (only Cancel, if it can stop) and after it."""
        self.evaluate.enabled = self.compare.enabled = self.tune.enabled = not running
        self.cancel.enabled = running and cancellable
        tuned = self._tuned is not None and bool(self._tuned.result.changed)
        self.save_tuned.enabled = not running and tuned

    def _on_error(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, CellsegError) else f"{type(exc).__name__}: {exc}"
        self._progress.record(None, None, f"failed: {message}")
        show_error(message)

    def _show(self, columns: dict[str, dict[str, Any]], message: str) -> None:
        self.results = columns
        fill_metrics_table(self.table, columns)
        self._progress.record(1, 1, message)

    def run_evaluation(self) -> None:
        """Score the chosen prediction against the chosen ground truth (in a worker)."""
        if self.running:
            return
        try:
            if self.source.value == "layers":
                pred = self._require("prediction_layer", "a prediction Labels layer")
                gt = self._require("ground_truth_layer", "a ground-truth Labels layer")
                args = (_snapshot(gt.data), _snapshot(pred.data))
                title, func = pred.name, evaluate_labels
            else:
                pred = self._require("prediction_folder", "a folder of predicted label images")
                gt = self._require("ground_truth_folder", "a folder of ground-truth labels")
                title, func = Path(pred).name, iter_evaluate_folders
                args = (Path(pred), Path(gt))
        except CellsegError as exc:
            show_error(str(exc))
            return
        self.status.value = f"evaluating {title}…"
        self._launch(
            func, *args, on_done=lambda m: self._show({title: m}, f"{title} vs {_name(gt)}")
        )

    def run_comparison(self) -> None:
        """Segment with models A and B, score both and show them side by side (in a worker)."""
        if self.running:
            return
        try:
            a = Path(self._require("weights_a", "the weight file of model A"))
            b = Path(self._require("weights_b", "the weight file of model B"))
            image_layer, images = self._comparison_images()
            diameter = self._diameter_for(image_layer)
        except CellsegError as exc:
            show_error(str(exc))
            return
        weights = {f"A: {a.stem}": a, f"B: {b.stem}": b}
        self.status.value = f"comparing… (object diameter: {_diameter_text(diameter)})"
        self._launch(
            partial(
                iter_compare,
                keep_predictions=image_layer is not None,
                diameter=diameter,
                invert=self._session.invert,  # the Segment tab's Invert box
            ),
            weights,
            images,
            self.device.value,
            on_done=lambda result: self._compared(result, image_layer),
        )

    def _diameter_for(self, image_layer: Image | None) -> float | str | None:
        """The Segment tab's object diameter; µm turned into px with the layer's scale."""
        diameter = self._session.diameter
        if isinstance(diameter, str) and diameter.endswith("um") and image_layer is not None:
            return parse_diameter(diameter, physical_pixel_size(image_layer))
        return diameter

    def _comparison_images(self) -> tuple[Image | None, list[Any]]:
        if self.source.value == "folders":
            images = self._require("image_folder", "a folder of images")
            gt = self._require("ground_truth_folder", "a folder of ground-truth labels")
            return None, folder_images(Path(images), Path(gt))
        layer = self._require("image_layer", "an Image layer")
        gt = self._require("ground_truth_layer", "a ground-truth Labels layer")
        # as the Segment tab would segment it: the layer's channel choice (axis, signal, helper)
        chosen = layer_channels(layer, [ly for ly in self._viewer.layers if isinstance(ly, Image)])
        image = EvalImage(
            layer.name, chosen.data, chosen.axes, np.asarray(gt.data), chosen.signal, chosen.helper
        )
        return layer, [image]

    def _compared(self, result: Comparison, image_layer: Image | None) -> None:
        added = []
        if image_layer is not None:
            for title, (prediction,) in result.predictions.items():
                name = result_name(image_layer.name, title)
                put_labels(self._viewer, name, prediction.labels, image=image_layer, metadata={})
                self._session.add_prediction(name, prediction)
                added.append(name)
        n = next(iter(result.metrics.values()), {}).get("n_images", 0)
        where = f"; added {', '.join(added)}" if added else ""
        self._show(dict(result.metrics), f"compared two models on {n} image(s){where}")

    def run_tuning(self) -> None:
        """Choose model A's thresholds on the chosen labelled images (in a worker)."""
        if self.running:
            return
        try:
            a = Path(self._require("weights_a", "the weight file of model A"))
            layer, images = self._comparison_images()
            diameter = self._diameter_for(layer)
        except CellsegError as exc:
            show_error(str(exc))
            return
        self._tuned = None
        self.status.value = f"tuning {a.name}… (object diameter: {_diameter_text(diameter)})"
        self._launch(
            partial(iter_tune, invert=self._session.invert),
            a, images, self.device.value, diameter, on_done=self._on_tuned,
        )  # fmt: skip

    def _on_tuned(self, tuned: Tuned) -> None:
        self._tuned = tuned
        self._show(*tuned.summary())

    def save_tuned_model(self) -> None:
        """Save the tuned copy beside model A and make the Segment tab use it."""
        if self._tuned is None or self.running:
            return
        data = self._tuning_data()
        self.status.value = "saving the tuned copy…"
        demo_copies = config_dir() / "models"  # a demo model's copy: not into the package
        self._launch(save_tuned_copy, self._tuned, data, demo_copies, on_done=self._on_saved)
        self._tuned = None  # saved once; tune again for another copy

    def _tuning_data(self) -> str:
        if self.source.value == "folders":
            return _name(self.image_folder.value)
        return _name(self.image_layer.value)

    def _on_saved(self, path: Path) -> None:
        self._session.weights = path  # the Segment tab shows it with its thresholds
        self._progress.record(1, 1, f"saved {path.name}; the Segment tab uses it")
        show_info(f"tuned copy saved to {path} and chosen in the Segment tab")

    # -- export -----------------------------------------------------------------------------
    def export_csv(self) -> Path | None:
        """Write the table to the chosen CSV file (atomically); returns the path written."""
        try:
            path = write_metrics_csv(self.results, self.export_path.value)
        except CellsegError as exc:
            show_error(str(exc))
            return None
        show_info(f"metrics written to {path}")
        return path


def _snapshot(data: Any) -> Any:
    """A copy of an in-memory array (the user may paint while the worker reads it)."""
    return data.copy() if isinstance(data, np.ndarray) else data


def _diameter_text(diameter: float | str | None) -> str:
    """The Segment tab's diameter for a status line."""
    if diameter is None:
        return "each model's default"
    return f"{diameter:g} px" if isinstance(diameter, float) else str(diameter)


def _name(value: Any) -> str:
    return value.name if hasattr(value, "name") else str(value)
