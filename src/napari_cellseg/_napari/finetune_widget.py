"""The "Fine-tune" dock: train from the current weights on a training-set folder, live.

``iter_train`` runs in a napari worker; its events are recorded by a
:class:`~napari_cellseg._napari._finetune_monitor.TrainingMonitor` and shown a few times a
second (progress, status, curves). Stop keeps the last checkpoint; Resume continues from it.
At the end the new model's validation metrics are shown beside the base model's, and a model
that scores lower is never put to use without a warning and an explicit confirmation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import Container, FileEdit, Label, ProgressBar, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QMessageBox, QSizePolicy

from napari_cellseg._napari._common import WEIGHT_FILTER, track_task
from napari_cellseg._napari._finetune_monitor import TrainingMonitor, make_curves
from napari_cellseg._napari._finetune_parts import (
    BASE_COLUMN,
    Outcome,
    SessionFields,
    apply_recipe,
    outcome_of,
    parameter_fields,
    params_from,
)
from napari_cellseg._napari._metrics_table import fill_metrics_table, make_metrics_table
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari._threads import with_gui_threads
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import EpochEnd, Notice, TrainingFinished
from napari_cellseg.training.checkpoints import checkpoint_path_for
from napari_cellseg.training.loop import iter_train

MIN_WIDTH = 430  # pixels: room for a file name in the fields and the status text


def _ask_user(parent: Any, message: str) -> bool:
    answer = QMessageBox.warning(
        parent,
        "Use a worse model?",
        message,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class FineTuneWidget(Container):
    """Dock widget to fine-tune the session's weights on its training set."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True, scrollable=True)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._worker: Any = None
        self._run_output: Path | None = None
        self._completed: set[Path] = set()  # outputs whose run ended (nothing to resume)
        self.result: TrainingFinished | None = None
        self.outcome: Outcome | None = None
        #: Asked before a worse model is put to use; ``confirm(message) -> bool`` (tests swap it).
        self.confirm: Callable[[str], bool] = lambda message: _ask_user(self.native, message)

        self._training_set = FileEdit(
            name="training_set", label="Training set", mode="d", nullable=True
        )
        self._base = FileEdit(
            name="base_weights",
            label="Base weights",
            mode="r",
            filter=WEIGHT_FILTER,
            nullable=True,
        )
        self._output = FileEdit(
            name="output", label="Save as", mode="w", filter="*.safetensors", nullable=True
        )
        self._start = PushButton(name="start", text="Start")
        self._stop = PushButton(name="stop", text="Stop", enabled=False)
        self._resume = PushButton(name="resume", text="Resume", enabled=False)
        self._progress = ProgressBar(name="progress", label="Progress", value=0, min=0, max=1)
        self._status = Label(name="status", label="Status", value="idle")
        self._status.native.setWordWrap(True)
        self._status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._comparison = make_metrics_table("comparison", "Validation")
        self._verdict = Label(name="verdict", label=" ", value="")
        self._verdict.native.setWordWrap(True)
        self._use = PushButton(name="use_weights", text="Use new weights", enabled=False)
        buttons = Container(
            name="buttons", label=" ", layout="horizontal", labels=False,
            widgets=[self._start, self._stop, self._resume],
        )  # fmt: skip
        buttons.margins = (0, 0, 0, 0)
        self.extend([self._training_set, self._base, self._output, *parameter_fields()])
        self.extend([buttons, self._progress, self._status])
        self.extend([self._comparison, self._verdict, self._use])
        self.curves = make_curves()  # a plain QWidget, full width, under the status
        self.native.layout().insertWidget(self.index(self._status) + 1, self.curves)
        scroll = self.root_native_widget
        scroll.setMinimumWidth(max(scroll.minimumWidth(), MIN_WIDTH))
        self.monitor = TrainingMonitor(self._progress, self._status, self.curves)

        self.stop_by.changed.connect(self._on_stop_by)
        self._on_stop_by(self.stop_by.value)
        self.fields = SessionFields(
            self._session,
            self._training_set,
            self._base,
            self._output,
            self.learning_rate,
            on_change=self._refresh_buttons,
            is_running=lambda: self.running,
            on_family=lambda family: apply_recipe(self, self.recipe.value, family),
        )
        self.recipe.changed.connect(lambda value: apply_recipe(self, value, self.fields.family))
        self._start.clicked.connect(self.start_training)
        self._stop.clicked.connect(self.stop_training)
        self._resume.clicked.connect(self.resume_training)
        self._use.clicked.connect(self.use_new_weights)

    # -- state ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a training worker is running."""
        return self._worker is not None

    @property
    def start(self) -> PushButton:
        """The Start button (in the button row)."""
        return self._start

    @property
    def stop(self) -> PushButton:
        """The Stop button (in the button row)."""
        return self._stop

    @property
    def resume(self) -> PushButton:
        """The Resume button (in the button row)."""
        return self._resume

    @property
    def worker(self) -> Any:
        """The running napari worker, or ``None``."""
        return self._worker

    def _refresh_buttons(self) -> None:
        running = self.running
        self._start.enabled = not running
        self._stop.enabled = running
        out = self._output.value
        self._resume.enabled = (
            not running
            and out is not None
            and Path(out) not in self._completed
            and checkpoint_path_for(out).is_file()
        )
        self._use.enabled = not running and self.result is not None

    # -- running ----------------------------------------------------------------------------
    def _on_stop_by(self, value: str) -> None:
        self.minutes.visible = value == "minutes"
        self.epochs.label = "Max epochs" if value == "minutes" else "Epochs"

    def start_training(self) -> None:
        """Start fine-tuning (or training from scratch without base weights)."""
        if self.running:
            return
        try:
            folder, base, out = self.fields.checked_paths()
            family = self.fields.read_family(base) if base is not None else "unet"
            params = params_from(self, family, fine_tuning=base is not None)
            if base is not None and params.invert is None and self._session.invert:  # auto
                params = replace(params, invert=True)
        except CellsegError as exc:
            show_error(str(exc))
            return
        self.monitor.begin(params.epochs)
        self._launch(out, [folder], out, params, init=base)
        self._status.value = f"starting: {'fine-tuning ' + base.name if base else 'training'}…"

    def resume_training(self) -> None:
        """Continue from the checkpoint of the output file."""
        out = self._output.value
        if self.running or out is None:
            return
        ckpt = checkpoint_path_for(out)
        if not ckpt.is_file():
            show_error(f"{ckpt}: no checkpoint to resume from")
            return
        self.monitor.begin(0, keep=self._run_output == Path(out))
        self._launch(Path(out), None, None, resume=ckpt)
        self._status.value = f"resuming from {ckpt.name}…"

    def _launch(self, out: Path, *args: Any, **kwargs: Any) -> None:
        self.result = self.outcome = None
        self._run_output = out
        self._completed.discard(out)
        fill_metrics_table(self._comparison, {})
        self._verdict.value = ""
        worker = create_worker(
            _train_job, *args, _start_thread=False, _ignore_errors=True, **kwargs
        )
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_finished)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_worker_done)
        self._worker = worker
        self._refresh_buttons()
        track_task(self._viewer, worker, "fine-tuning (closing stops it; the checkpoint is kept)")
        worker.start()

    def stop_training(self) -> None:
        """Ask the worker to stop at its next yield; the last checkpoint is kept."""
        if self._worker is not None:
            self._worker.quit()
            self._status.value = "stopping after the current step…"

    def _on_event(self, event: Any) -> None:
        self.monitor.add(event)
        if isinstance(event, EpochEnd) and event.epoch == 0:
            fill_metrics_table(self._comparison, {BASE_COLUMN: event.val_metrics})
        elif isinstance(event, Notice) and event.level == "warning":
            show_warning(event.message)

    def _on_error(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, CellsegError) else f"{type(exc).__name__}: {exc}"
        self.monitor.end()
        self._status.value = f"failed: {message}"
        show_error(message)

    def _on_aborted(self) -> None:
        self.monitor.end()  # before the status text, which the monitor would overwrite
        ckpt = checkpoint_path_for(self._run_output) if self._run_output else None
        if ckpt is not None and ckpt.is_file():
            self._status.value = f"stopped — last checkpoint kept: {ckpt}"
        else:
            self._status.value = "stopped before the first checkpoint; nothing was saved"

    def _on_worker_done(self) -> None:
        self._worker = None
        self.monitor.end()
        self._refresh_buttons()

    def _on_finished(self, finished: TrainingFinished) -> None:
        self.result = finished
        self.monitor.end()
        self._completed.add(Path(finished.weights_path))
        self.monitor.load_history(finished.history, finished.baseline_metrics)
        self.outcome = outcome_of(finished, self.monitor.baseline)
        fill_metrics_table(self._comparison, self.outcome.columns)
        self._verdict.value = self.outcome.verdict
        self._status.value = (
            f"finished ({finished.stopped_reason}) after {finished.epochs_run} epochs: "
            f"{finished.kept_base_message() or finished.weights_path}"
        )
        if self.outcome.worse:
            show_warning(self.outcome.verdict)

    def use_new_weights(self) -> None:
        """Make the new weights the session's (asks first when they score lower)."""
        if self.result is None:
            return
        if self.outcome is not None and self.outcome.worse:
            question = self.outcome.verdict + "\n\nUse the new weights anyway?"
            if not self.confirm(question):
                self._status.value = "kept the base model"
                return
        path = Path(self.result.weights_path)
        self._session.weights = path
        self._status.value = f"segmentation now uses {path.name}"
        show_info(f"segmentation now uses {path}")


def _train_job(*args: Any, **kwargs: Any):
    """``iter_train`` with a CPU core left to the GUI (see ``_threads``)."""
    return (yield from with_gui_threads(iter_train(*args, **kwargs)))
