"""The "Batch segment folder…" dock: segment every image of a folder without blocking napari.

:func:`~napari_cellseg.batch.iter_batch` runs in a napari worker; its events update counters
that a timer shows a few times a second. Cancel stops the batch cleanly at its next file or tile
(outputs, manifest and folder lock stay consistent; Start again skips finished files). At the
end: a summary, a table of failed files, and "Open result" for any processed file.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui import widgets as mw
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHeaderView, QSizePolicy

from napari_cellseg._napari._batch_jobs import BatchFailed, patterns, read_result, run_batch_job
from napari_cellseg._napari._batch_stacks import BatchStackRows
from napari_cellseg._napari._channel_row import BatchChannelRow
from napari_cellseg._napari._common import WEIGHT_FILTER, track_task
from napari_cellseg._napari._diameter_row import DiameterRow
from napari_cellseg._napari._segment_options import BACKEND_LABELS, THRESHOLD_NAMES, TTA_LABELS
from napari_cellseg._napari._session import session_for
from napari_cellseg.batch import BatchSummary, FileResult
from napari_cellseg.batch.jobs import estimated_sizes
from napari_cellseg.batch.scheduler import default_workers
from napari_cellseg.device import available_devices
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, Progress
from napari_cellseg.families import FAMILIES
from napari_cellseg.params import PredictParams, describe_post, field_info

REFRESH_MS = 250  # status and progress are refreshed at most 4 times a second
COLUMNS = ["file", "reason"]
STAGES = {"stitch": "stitching in 3D", "link": "linking over time"}


def _options(name: str) -> dict[str, Any]:
    """Label, tooltip and bounds of a ``PredictParams`` field's widget (its metadata)."""
    return field_info(PredictParams, name).widget_options()


def _activity(event: Progress) -> str:
    """A progress line: ``"cells.tif: tile 3/12"``, or the plane or frame when joining.

    >>> _activity(Progress("blocks", 2, 5, "big.tif"))
    'big.tif: block 2/5'
    >>> _activity(Progress("link", 3, 9, "frame 3/9"))
    'linking over time: frame 3/9'
    >>> _activity(Progress("diameter", 2, 9, "choosing the scale"))
    'choosing the scale (2/9)'
    """
    if event.stage in STAGES:  # stitching / linking: the message counts planes or frames
        return f"{STAGES[event.stage]}: {event.message}"
    if event.stage == "diameter":  # diameter auto: quick passes before each image's run
        return f"{event.message} ({event.done}/{event.total})"
    unit = "block" if event.stage == "blocks" else "tile"  # blocks: large images
    return f"{event.message}: {unit} {event.done}/{event.total}"


class BatchWidget(mw.Container):
    """Dock widget to segment a whole folder with the session's weights."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True, scrollable=True)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._worker: Any = None
        self._stop = threading.Event()
        self._results: dict[str, FileResult] = {}  # rel -> done or skipped result
        self._failed: list[FileResult] = []
        self.summary: BatchSummary | None = None
        self._estimating = False  # the running batch estimates each image's object diameter
        self._files = (0, 0)
        self._activity = ""
        self._started = 0.0
        self._dirty = False
        self._loader: Any = None  # the worker reading a result to open
        self.updates = 0  # status refreshes (tests check the throttle)

        defaults = PredictParams()
        self._input = mw.FileEdit(name="input", label="Input folder", mode="d", nullable=True)
        self._recursive = mw.CheckBox(name="recursive", text="Include subfolders")
        self._include = mw.LineEdit(name="include", label="Include", value="")
        self._exclude = mw.LineEdit(name="exclude", label="Exclude", value="")
        self._include.tooltip = "glob patterns, comma separated (e.g. *.tif, *.png); empty: all"
        self._exclude.tooltip = "glob patterns of files to skip, comma separated"
        self._output = mw.FileEdit(name="output", label="Output folder", mode="d", nullable=True)
        self._weights = mw.FileEdit(
            name="weights", label="Weights", mode="r", filter=WEIGHT_FILTER, nullable=True
        )
        self._device = mw.ComboBox(name="device", choices=available_devices(), **_options("device"))
        self._tile = mw.SpinBox(
            name="tile_size", step=32, value=defaults.tile_size, **_options("tile_size")
        )
        self._overlap = mw.SpinBox(
            name="overlap", max=4095, value=defaults.overlap, **_options("overlap")
        )
        self._tta = mw.ComboBox(
            name="tta", choices=TTA_LABELS, value=defaults.tta, **_options("tta")
        )
        self._backend = mw.ComboBox(
            name="backend", choices=BACKEND_LABELS, value=defaults.backend, **_options("backend")
        )
        self._diameter = DiameterRow(measure=False, allow_default=True)
        self._channels = BatchChannelRow()
        self._stacks = BatchStackRows()  # stitch 3D / link over time
        self._thresholds = mw.Label(name="thresholds", label="Thresholds", value="")
        self._measure = mw.CheckBox(name="measure", text="Measure objects (CSV)")
        self._geojson = mw.CheckBox(name="export_geojson", text="QuPath GeoJSON")
        self._rois = mw.CheckBox(name="export_roi", text="Fiji ROI set")
        exports = mw.Container(
            name="exports", label="Export", layout="horizontal", labels=False,
            widgets=[self._geojson, self._rois],
        )  # fmt: skip
        exports.margins = (0, 0, 0, 0)
        self._scheduler = mw.ComboBox(
            name="scheduler", label="Scheduler", choices=["none", "local"]
        )
        self._workers = mw.SpinBox(
            name="workers", label="Workers", min=1, max=64, value=default_workers(), visible=False
        )
        self._overwrite = mw.CheckBox(name="overwrite", text="Replace other settings' results")
        self._start = mw.PushButton(name="start", text="Start")
        self._cancel = mw.PushButton(name="cancel", text="Cancel", enabled=False)
        buttons = mw.Container(
            name="buttons", label=" ", layout="horizontal", labels=False,
            widgets=[self._start, self._cancel],
        )  # fmt: skip
        buttons.margins = (0, 0, 0, 0)
        self._progress = mw.ProgressBar(name="progress", label="Files", value=0, min=0, max=1)
        self._status = mw.Label(name="status", label="Status", value="idle")
        self._summary = mw.Label(name="summary_line", label="Summary", value="")
        for label in (self._status, self._summary, self._thresholds):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._errors = mw.Table(name="errors", label="Failed files")
        self._errors.read_only = True
        self._errors.native.setMinimumHeight(110)
        self._result_box = mw.ComboBox(name="result", label="Result", choices=self._result_choices)
        self._open = mw.PushButton(name="open_result", text="Open result", enabled=False)
        self.extend([self._input, self._recursive, self._include, self._exclude, self._output])
        self.extend([self._weights, self._device, self._tile, self._overlap, self._tta])
        self.extend([self._backend])
        self.extend(self._channels.widgets)
        self.extend(self._stacks.widgets)
        self.extend([self._diameter.container, self._thresholds, self._measure, exports])
        self.extend([self._scheduler, self._workers, self._overwrite, buttons, self._progress])
        self.extend([self._status, self._summary, self._errors, self._result_box, self._open])
        self._fill_errors()

        self._timer = QTimer(interval=REFRESH_MS)
        self._timer.timeout.connect(self.flush)
        self._followed: Path | None = None
        self._proposed: Path | None = None
        self._on_session_weights(self._session.weights)
        self._session.weights_changed.connect(self._on_session_weights)
        self._on_session_params()
        self._session.params_changed.connect(self._on_session_params)
        self._on_session_channels()
        self._session.channels_changed.connect(self._on_session_channels)
        self._weights.changed.connect(self._show_thresholds)
        self._input.changed.connect(self._on_input)
        self._scheduler.changed.connect(lambda v: setattr(self._workers, "visible", v == "local"))
        self._start.clicked.connect(self.start_batch)
        self._cancel.clicked.connect(self.cancel_batch)
        self._open.clicked.connect(self.open_selected)
        self._result_box.changed.connect(self._refresh_buttons)

    # -- state ------------------------------------------------------------------------------
    running = property(lambda self: self._worker is not None, doc="Whether a batch runs.")
    worker = property(lambda self: self._worker, doc="The running napari worker, or None.")
    start = property(lambda self: self._start, doc="The Start button (in the button row).")
    cancel = property(lambda self: self._cancel, doc="The Cancel button (in the button row).")

    def _refresh_buttons(self, *_args: Any) -> None:
        self._start.enabled = not self.running
        self._cancel.enabled = self.running and not self._stop.is_set()
        self._open.enabled = self._result_box.value is not None

    def _result_choices(self, _widget: Any = None) -> list[str]:
        return list(self._results)

    def _on_session_weights(self, value: Path | None) -> None:
        """Follow the session's weights until the user picks another file."""
        if value is not None and self._weights.value in (None, self._followed):
            self._weights.value = value
        self._followed = value

    def _on_session_params(self) -> None:
        """Follow the Segment tab's diameter; show whose thresholds a batch would use."""
        self._diameter.set_spec(self._session.diameter)
        self._show_thresholds()

    def _on_session_channels(self) -> None:
        """Follow the Segment tab's channel choice (file axes, signal, helper)."""
        self._channels.follow(self._session.channels)

    def post_params(self) -> Any:
        """The Segment tab's thresholds when it shows the same weights, else ``None``."""
        same = self._weights.value is not None and self._weights.value == self._session.weights
        return self._session.post_params if same else None

    def _show_thresholds(self, *_args: Any) -> None:
        post = self.post_params()
        if post is None:
            self._thresholds.value = "the model's own (its card)"
            return
        spec = FAMILIES.get(self._session.family or "")
        names = spec.thresholds if spec is not None else THRESHOLD_NAMES
        used = {name: getattr(post, name) for name in (*names, "min_size")}
        self._thresholds.value = f"Segment tab's: {describe_post(used)}"
        self._thresholds.tooltip = f"all post-processing values: {post}"

    def _on_input(self, value: Path | None) -> None:
        """Propose ``<input>_segmented`` beside the input until the user picks an output."""
        if value and self._output.value in (None, self._proposed):
            self._proposed = Path(value).parent / f"{Path(value).name}_segmented"
            self._output.value = self._proposed

    # -- running ----------------------------------------------------------------------------
    def start_batch(self) -> None:
        """Check the fields and start the batch in a worker thread."""
        if self.running:
            return
        try:
            kwargs = self._batch_kwargs()
        except CellsegError as exc:
            show_error(str(exc))
            return
        self._stop.clear()
        self._estimating = _estimates_each_image(kwargs["weights"], kwargs["params"])
        self._results.clear()
        self._failed.clear()
        self.summary = None
        self._files, self._activity = (0, 0), "starting…"
        self._summary.value = ""
        self._fill_errors()
        self._result_box.reset_choices()
        worker = create_worker(run_batch_job, _start_thread=False, _ignore_errors=True, **kwargs)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_summary)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_worker_done)
        self._worker = worker
        self._started = time.monotonic()
        self._dirty = True
        self._timer.start()
        self._refresh_buttons()
        track_task(self._viewer, worker, "batch segmentation of a folder", cancel=self._stop.set)
        worker.start()

    def _batch_kwargs(self) -> dict[str, Any]:
        folder, out, weights = self._input.value, self._output.value, self._weights.value
        if folder is None or not Path(folder).is_dir():
            raise CellsegError("choose an input folder")
        if out is None:
            raise CellsegError("choose an output folder")
        if weights is None:
            raise CellsegError("choose a weight file (or set one in the Segment dock)")
        params = PredictParams(
            **self._channels.params_values(weights),  # axes, channels: the Channels rows
            device=self._device.value,
            tile_size=self._tile.value,
            overlap=self._overlap.value,
            tta=int(self._tta.value),
            backend=str(self._backend.value),
            post=self.post_params(),  # None: the model's own thresholds
            diameter=self._diameter.spec(),
            invert=self._session.invert,  # the Segment tab's Invert box
            **self._stacks.params_values(),  # stitch_3d, link_time, ...: the Stacks rows
        )
        local = self._scheduler.value == "local"
        return {
            "inputs": Path(folder),
            "out": Path(out),
            "weights": Path(weights),
            "params": params,
            "recursive": self._recursive.value,
            "include": patterns(self._include.value) or None,
            "exclude": patterns(self._exclude.value),
            "measure": self._measure.value,
            "exports": [
                n for n, box in (("geojson", self._geojson), ("roi", self._rois)) if box.value
            ],
            "scheduler": self._scheduler.value,
            "workers": self._workers.value if local else None,
            "overwrite": self._overwrite.value,
            "should_stop": self._stop.is_set,
        }

    def cancel_batch(self) -> None:
        """Stop at the next file or tile; finished files are kept and skipped on a rerun."""
        if self.running and not self._stop.is_set():
            self._stop.set()
            self._activity = "stopping after the current tile…"
            self._dirty = True
            self._refresh_buttons()

    def _on_event(self, event: Any) -> None:
        """Record an event (cheap); the widgets follow on the timer."""
        if isinstance(event, Progress):
            if event.stage == "files":
                self._files = (event.done, event.total)
            else:
                self._activity = _activity(event)
        elif isinstance(event, FileResult):
            if event.status == "failed":
                self._failed.append(event)
            else:
                self._results[event.rel] = event
            self._activity = f"{event.rel}: {event.status}"
        elif isinstance(event, Notice):
            self._activity = event.message
        self._dirty = True

    def _on_summary(self, summary: BatchSummary) -> None:
        """The batch's return value (before ``finished``)."""
        self.summary = summary
        self._dirty = True

    def flush(self) -> None:
        """Show the recorded progress (only when something changed)."""
        if not self._dirty:
            return
        self._dirty = False
        self.updates += 1
        done, total = self._files
        self._progress.max = max(1, total)
        self._progress.value = min(done, max(1, total))
        ok = sum(r.status == "done" for r in self._results.values())
        counts = f"{ok} done, {len(self._results) - ok} skipped, {len(self._failed)} failed"
        elapsed = time.monotonic() - self._started
        self._status.value = f"{done}/{total} files · {counts} · {elapsed:.0f} s\n{self._activity}"

    def _on_error(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, CellsegError | BatchFailed) else repr(exc)
        self._activity = f"failed: {message}"
        show_error(message)

    def _on_worker_done(self) -> None:
        self._worker = None
        self._timer.stop()
        self._dirty = True
        if self.summary is not None:
            self._show_summary(self.summary)
        self.flush()
        self._result_box.reset_choices()
        self._refresh_buttons()

    def _show_summary(self, s: BatchSummary) -> None:
        self._summary.value = (
            f"{s.done} done, {s.skipped} skipped, {s.failed} failed, {s.objects} objects "
            f"in {s.seconds:.1f} s → {s.out}"
        )
        sizes = [r.diameter for r in self._results.values() if r.status == "done" and r.diameter]
        found = estimated_sizes(sizes) if self._estimating else None
        if found is not None:  # the estimate was most of each image's time: say what to give
            median, low, high = found
            self._summary.value += (
                f"\nobject diameters estimated per image: median {median:.0f} px ({low:.0f}–"
                f"{high:.0f}); for alike images, Diameter {median:.0f} px skips the estimate"
            )
        self._activity = (
            f"stopped: the results of {s.done + s.skipped} file(s) are kept in {s.out}; "
            "Start again to continue (finished files are skipped)"
            if s.cancelled
            else f"finished; manifest: {s.manifest}"
        )
        self._fill_errors()

    def _fill_errors(self) -> None:
        rows = [[r.file, r.reason] for r in self._failed]
        index = [str(i + 1) for i in range(len(rows))]
        self._errors.value = {"data": rows, "index": index, "columns": COLUMNS}
        self._errors.native.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

    # -- results ----------------------------------------------------------------------------
    def open_selected(self) -> None:
        """Load the chosen file and its labels into the viewer (read in a worker)."""
        result = self._results.get(self._result_box.value or "")
        if result is None or result.labels is None:
            return
        worker = create_worker(read_result, result, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._add_layers)
        worker.errored.connect(
            lambda exc: show_error(str(exc) if isinstance(exc, CellsegError) else repr(exc))
        )
        self._loader = worker  # keep a reference while it runs
        worker.start()

    def _add_layers(self, loaded: tuple[Any, dict, np.ndarray, dict]) -> None:
        image, image_kwargs, labels, labels_kwargs = loaded
        self._viewer.add_image(image, **image_kwargs)
        self._viewer.add_labels(labels, **labels_kwargs)


def _estimates_each_image(weights: Path, params: PredictParams) -> bool:
    """Whether a batch with ``params`` estimates each image's diameter (False when the weight
    file's card cannot be read: the batch itself says why)."""
    from napari_cellseg.inference.object_size import estimates_each_image
    from napari_cellseg.models import read_card

    try:
        return estimates_each_image(read_card(weights), params)
    except (CellsegError, OSError):
        return False
