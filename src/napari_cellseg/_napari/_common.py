"""Small pieces the plugin's widgets share (kept free of torch so they import quickly)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox

#: What the weight pickers offer: weight files and bioimage.io packages (zipped, or an
#: unzipped one's description file; ``models.load_weights`` reads all of them).
WEIGHT_FILTER = "*.safetensors *.pt *.pth *.bin *.zip bioimageio.yaml rdf.yaml"

#: Overrides where the widgets keep settings and autosaves (tests point it at a temp folder).
CONFIG_ENV = "NAPARI_CELLSEG_CONFIG_DIR"


def layer_choices(viewer: Any, kind: type) -> Callable[..., list[tuple[str, Any]]]:
    """A ComboBox choices function: ``(name, layer)`` of the viewer's layers of ``kind``."""
    return lambda _widget=None: [(ly.name, ly) for ly in viewer.layers if isinstance(ly, kind)]


def rebuild_choices(combo: ComboBox) -> None:
    """Refill ``combo`` in the order its choices function gives, keeping its value if offered.

    magicgui matches items by their text, so a renamed item would move to the end and lose the
    selection; rebuilding keeps the order of the layer list and the user's choice.
    """
    before = combo.value
    with combo.changed.blocked():
        combo.native.clear()
        combo.reset_choices()
        if before in combo.choices:
            combo.value = before
    if combo.value != before:
        combo.changed.emit(combo.value)


def track_task(
    viewer: Any, worker: Any, description: str, cancel: Callable[[], Any] | None = None
) -> None:
    """Register a running worker with napari's task status (best effort).

    Closing the viewer then lists the task in napari's "close anyway?" dialog and, when the
    user closes, cancels it (``cancel``, default ``worker.quit``): the worker stops at its
    next yield instead of running on, unseen, and keeping the application from quitting.
    A fine-tune stopped this way keeps its last checkpoint.
    """
    window = getattr(viewer, "window", None)
    # napari has no public task-status API yet; its private one warns (FutureWarning) when a
    # plugin reads it and may go in napari 0.10, when this falls back to doing nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        register = getattr(window, "_register_task_status", None)
        update = getattr(window, "_update_task_status", None)
    if register is None or update is None:
        return
    try:
        from napari.utils.task_status import Status
    except ImportError:  # pragma: no cover - older napari
        return
    stop = cancel or worker.quit

    def on_cancel() -> bool:
        stop()
        return True

    task_id = register("napari-cellseg", Status.BUSY, description, cancel_callback=on_cancel)
    worker.finished.connect(lambda: update(task_id, Status.COMPLETED))


class ThrottledProgress:
    """Shows a worker's latest progress and message at most a few times a second.

    Repainting a progress bar for every tile would repaint the window each time (slow with
    software OpenGL, and it blocks the event loop); workers' events are recorded here and a
    timer shows the latest. When the timer is not running, a record is shown at once.
    """

    def __init__(self, bar: Any, status: Any, parent: Any, interval_ms: int = 250) -> None:
        from qtpy.QtCore import QTimer

        self._bar, self._status = bar, status
        self._pending: list[Any] | None = None  # [done, total, message]
        self._timer = QTimer(parent)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.flush)

    def start(self) -> None:
        """Show recorded progress on the timer from now on (a run started)."""
        self._timer.start()

    def stop(self) -> None:
        """Show what is pending and go back to showing records at once (the run ended)."""
        self._timer.stop()
        self.flush()

    def record(self, done: int | None, total: int | None, message: str | None) -> None:
        """Remember ``done`` of ``total`` and ``message`` (``None`` keeps the previous one)."""
        pending = self._pending or [None, None, None]
        for i, value in enumerate((done, total, message)):
            if value is not None:
                pending[i] = value
        self._pending = pending
        if not self._timer.isActive():
            self.flush()

    def flush(self) -> None:
        """Show the pending progress and message, if any."""
        if self._pending is None:
            return
        (done, total, message), self._pending = self._pending, None
        if done is not None and total is not None:
            self._bar.max = max(1, int(total))
            self._bar.value = min(int(done), self._bar.max)
        if message is not None:
            self._status.value = message


class SyncGuard:
    """Tells change handlers that the widget itself is setting its fields.

    ``with guard: field.value = x`` sets :attr:`active` meanwhile; a handler that reacts to
    the user's edits returns early while it is set (no echo, no loop between two pickers).
    """

    def __init__(self) -> None:
        self.active = False

    def __enter__(self) -> SyncGuard:
        self.active = True
        return self

    def __exit__(self, *_exc: object) -> None:
        self.active = False
