"""The Segment dock's run machinery: the worker, progress, re-applying thresholds.

``SegmentRun`` runs :func:`~napari_cellseg.inference.iter_predict` in a napari
``GeneratorWorker``: the yielded events drive the progress bar and the status line, Cancel
calls ``worker.quit()`` (the generator stops at its next yield), and the result becomes
layers. Changing a threshold (or the stitching / linking options) re-applies post-processing
only (``reapply``), debounced and in a worker thread, so the viewer never waits on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import napari
from magicgui.widgets import (
    Container,
    Label,
    ProgressBar,
    PushButton,
    Widget,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_warning
from qtpy.QtCore import QObject, QTimer
from qtpy.QtWidgets import QSizePolicy

from napari_cellseg._napari import _layers
from napari_cellseg._napari._common import track_task
from napari_cellseg._napari._segment_jobs import JobError, predict_job, reapply_job
from napari_cellseg._napari._segment_options import RunRequest, SegmentOptions
from napari_cellseg._napari._session import session_for
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress
from napari_cellseg.inference.planes import Prediction

log = logging.getLogger(__name__)

PROGRESS_MAX = 100
REAPPLY_DELAY_MS = 150
UI_REFRESH_MS = 250
JOIN_STAGES = {"stitch": "Stitching planes in 3D", "link": "Linking frames"}


class SegmentRun:
    """Runs segmentation and re-applies thresholds; owns Run/Cancel, progress and status."""

    def __init__(
        self,
        viewer: napari.Viewer,
        options: SegmentOptions,
        *,
        report_error: Callable[[str], None],
        parent: QObject | None = None,
    ) -> None:
        self._viewer = viewer
        self._options = options
        self._report_error = report_error
        self._session = session_for(viewer)
        self.run_button = PushButton(name="run_button", text="Run")
        self.cancel_button = PushButton(name="cancel_button", text="Cancel", enabled=False)
        self.progress = ProgressBar(name="progress", label="Progress", min=0, max=PROGRESS_MAX)
        self.status = Label(name="status", label="Status", value="Ready.")
        self.status.native.setWordWrap(True)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.buttons = Container(
            name="buttons", label=" ", layout="horizontal", labels=False,
            widgets=[self.run_button, self.cancel_button],
        )  # fmt: skip
        self.buttons.margins = (0, 0, 0, 0)
        self.worker: Any = None
        self.prediction: Prediction | None = None
        #: Called with each new run's Prediction (e.g. to show the diameter estimate).
        self.on_prediction: Callable[[Prediction], None] | None = None
        self._request: RunRequest | None = None
        self._result: _layers.ResultTarget | None = None
        self._planes_done = 0
        self._reapply_worker: Any = None
        self._reapply_pending = False
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REAPPLY_DELAY_MS)
        self._timer.timeout.connect(self.reapply_now)
        # Progress and status are recorded per event and shown a few times a second: a
        # progress-bar repaint per tile would redraw the whole window (slow, blocks the loop).
        self._pending_progress: tuple[int, str | None] | None = None
        self._ui_timer = QTimer(parent)
        self._ui_timer.setInterval(UI_REFRESH_MS)
        self._ui_timer.timeout.connect(self._flush_progress)
        self.cancel_button.changed.connect(self.cancel)
        for widget in [*options.post_widgets, *options.join_widgets]:
            widget.changed.connect(self.schedule_reapply)
        options.boxes.changed.connect(self._on_boxes_toggled)

    @property
    def widgets(self) -> list[Widget]:
        """Run/Cancel row, progress bar and status line, in display order."""
        return [self.buttons, self.progress, self.status]

    # -- running --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a segmentation worker is alive."""
        return self.worker is not None

    @property
    def reapplying(self) -> bool:
        """Whether re-applying thresholds is scheduled or under way."""
        return self._timer.isActive() or self._reapply_worker is not None

    def start(self, request: RunRequest) -> Any:
        """Start a worker for ``request`` and return it (already started)."""
        worker = create_worker(
            predict_job, request.source.data, request.target.weights, request.params,
            _start_thread=False, _ignore_errors=True,
        )  # fmt: skip
        worker.yielded.connect(self._on_event)
        worker.returned.connect(partial(self._on_returned, request))
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(lambda: self._set_status("Cancelled: nothing was added."))
        worker.finished.connect(partial(self._on_finished, worker))
        self.worker, self._request, self._planes_done = worker, request, 0
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        self._set_status(f"Starting {request.params.device} run…")
        self._ui_timer.start()
        track_task(self._viewer, worker, f"segmenting into {request.target.name!r}")
        worker.start()
        return worker

    def cancel(self, _value: Any = None) -> None:
        """Ask the worker to stop at its next yield (nothing is added)."""
        if self.worker is not None:
            self.worker.quit()
            self._ui_timer.stop()
            self._pending_progress = None
            self.cancel_button.enabled = False
            self._set_status("Cancelling…")

    def shutdown(self, *_args: Any) -> None:
        """The dock is gone: stop the workers and ignore what they still send."""
        for worker in (self.worker, self._reapply_worker):
            if worker is not None:
                for name in ("yielded", "returned", "errored", "aborted", "finished"):
                    with contextlib.suppress(AttributeError, TypeError, RuntimeError):
                        getattr(worker, name).disconnect()
                worker.quit()

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _on_event(self, event: Progress | Notice) -> None:
        request = self._request
        if isinstance(event, Notice):
            self._set_status(event.message)
            if event.level == "warning":
                show_warning(event.message)
            return
        if request is None or not isinstance(event, Progress):
            return
        n_planes = max(1, request.source.n_planes)
        status = None
        if event.stage == "planes":
            self._planes_done = event.done
            fraction = event.done / n_planes
        elif event.stage == "tiles":
            fraction = (self._planes_done + event.fraction) / n_planes
            where = f", {event.message}" if event.message else ""
            status = f"Tiles {event.done}/{event.total}{where}"
        elif event.stage in JOIN_STAGES:  # after the planes: the bar starts again
            fraction = event.fraction
            status = f"{JOIN_STAGES[event.stage]} {event.done}/{event.total}"
        elif event.stage == "diameter":  # diameter auto: quick passes before the run
            fraction = 0.0
            what = event.message  # what the passes do (inference.diameter)
            status = f"{what[:1].upper()}{what[1:]} ({event.done}/{event.total})"
        else:
            fraction = 0.0
            status = f"Loaded {event.message}"
        self._pending_progress = (round(PROGRESS_MAX * min(fraction, 1.0)), status)

    def _flush_progress(self) -> None:
        """Show the latest recorded progress (called by the UI timer and at the end)."""
        if self._pending_progress is None:
            return
        value, status = self._pending_progress
        self._pending_progress = None
        if self.progress.value != value:
            self.progress.value = value
        if status is not None:
            self._set_status(status)

    def _on_returned(self, request: RunRequest, prediction: Prediction) -> None:
        self._ui_timer.stop()
        self._pending_progress = None
        self._request, self._result = None, request.target
        self.prediction = prediction
        self.progress.value = PROGRESS_MAX
        self._show(prediction)
        if self.on_prediction is not None:
            self.on_prediction(prediction)
        seconds = prediction.timings.get("total", 0.0)
        self._set_status(
            f"{prediction.n_objects} objects in {seconds:.1f} s on {prediction.device}"
            + (f" ({prediction.backend})" if prediction.backend else "")
            + "".join(f"\n{n}" for n in prediction.notices)
        )
        if self._options.post_params(prediction.params.post) != prediction.params.post:
            self.schedule_reapply()  # thresholds moved while the network ran

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, CancelledError):
            self._set_status("Cancelled: nothing was added.")
            return
        if isinstance(exc, (CellsegError, JobError)):
            self.fail(str(exc))
        else:
            self.fail(f"segmentation failed ({type(exc).__name__}: {exc})")

    def fail(self, message: str) -> None:
        """Show an expected problem: in the status line and as a notification."""
        self._set_status(f"⚠ {message}")
        self._report_error(message)

    def _on_finished(self, worker: Any) -> None:
        if self.worker is worker:
            self._ui_timer.stop()  # returned/aborted/errored have set the final status
            self._pending_progress = None
            self.worker, self._request = None, None
            self.run_button.enabled, self.cancel_button.enabled = True, False

    # -- results as layers ----------------------------------------------------------------
    def _show(self, prediction: Prediction, *, probability: bool = True) -> None:
        """Put the result into layers; a failure here is reported, never raised into Qt."""
        target = self._result
        if target is None:
            return
        try:
            layer = _layers.show_prediction(
                self._viewer, target, prediction, probability=probability
            )
            if layer.name != target.name:  # the old layer holds the user's corrections
                target = self._result = dataclasses.replace(target, name=layer.name)
            _layers.show_boxes(self._viewer, target, prediction, bool(self._options.boxes.value))
        except Exception as exc:
            log.exception("could not show the segmentation")
            self.fail(f"could not show the result ({type(exc).__name__}: {exc})")
            return
        self._session.add_prediction(layer.name, prediction)

    def _on_boxes_toggled(self, show: bool) -> None:
        if self._result is not None and self.prediction is not None:
            _layers.show_boxes(self._viewer, self._result, self.prediction, bool(show))

    # -- re-applying thresholds -----------------------------------------------------------
    def schedule_reapply(self, _value: Any = None) -> None:
        """(Re)start the debounce timer; the thresholds are applied when it fires."""
        if self.prediction is not None:
            self._timer.start()

    def reapply_now(self) -> None:
        """Re-run post-processing of the kept prediction in a worker (no network)."""
        base = self.prediction
        if base is None or self.running:
            return  # a running job checks the thresholds when it returns
        if self._reapply_worker is not None:
            self._reapply_pending = True
            return
        try:
            post = self._options.post_params(base.params.post)
            params = dataclasses.replace(base.params, **self._options.join_values())
        except CellsegError as exc:
            self._report_error(str(exc))
            return
        if post == base.params.post and params == base.params:
            return
        if not base.raw:  # a large image segmented in blocks keeps no network output
            self._set_status("New thresholds: press Run to apply them (large image).")
            return
        self._set_status("Re-applying the thresholds…")
        job = dataclasses.replace(base, params=params)  # stitched / linked as now asked
        worker = create_worker(reapply_job, job, post, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(partial(self._on_reapplied, base))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_reapply_finished)
        self._reapply_worker = worker
        worker.start()

    def _on_reapplied(self, base: Prediction, new: Prediction) -> None:
        if self.prediction is not base:
            return  # a newer run replaced the prediction meanwhile
        start = time.perf_counter()
        self.prediction = new
        self._show(new, probability=False)
        took = new.timings.get("postprocess", 0.0) + time.perf_counter() - start
        self._set_status(f"{new.n_objects} objects (thresholds re-applied in {took:.2f} s)")

    def _on_reapply_finished(self) -> None:
        self._reapply_worker = None
        if self._reapply_pending:
            self._reapply_pending = False
            self.reapply_now()
