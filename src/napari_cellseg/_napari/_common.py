"""Small pieces the plugin's widgets share (kept free of torch so they import quickly)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox

#: Overrides where the widgets keep settings and autosaves (tests point it at a temp folder).
CONFIG_ENV = "NAPARI_CELLSEG_CONFIG_DIR"


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
