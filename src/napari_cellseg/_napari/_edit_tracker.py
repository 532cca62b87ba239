"""Which objects the user changed in each labels layer, and a debounced autosave of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error
from psygnal import Signal
from qtpy.QtCore import QObject, QTimer

from napari_cellseg._napari._correct_helpers import boxes_in_history_item, ids_in_history_item
from napari_cellseg.errors import CellsegError
from napari_cellseg.training.corrected_set import autosave_corrections

AUTOSAVE_DELAY_MS = 1000


class EditTracker:
    """Collects edited object ids per labels layer from ``layer.events.paint``.

    napari emits ``paint`` once per committed undo-history item: a brush stroke, a fill, a
    polygon, an erase, or a ``data_setitem`` call (which is how the Correct dock edits). Each
    such event adds the old and new ids it touched and (re)starts a single-shot timer; when
    the user pauses for ``delay_ms`` the edited layers are written with
    :func:`~napari_cellseg.training.corrected_set.autosave_corrections` into ``folder()``.
    """

    changed = Signal(object)  # the Labels layer whose edited ids changed

    def __init__(
        self, folder: Callable[[], Path], parent: QObject | None = None,
        delay_ms: int = AUTOSAVE_DELAY_MS,
    ) -> None:  # fmt: skip
        self._folder = folder
        self._edited: dict[int, set[int]] = {}  # id(layer) -> ids
        self._boxes: dict[int, list] = {}  # id(layer) -> bounding boxes of the edits
        self._pending: dict[int, Labels] = {}  # layers edited since the last autosave
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.autosave_now)

    def watch(self, layer: Labels) -> None:
        layer.events.paint.connect(self._on_paint)

    def unwatch(self, layer: Labels) -> None:
        layer.events.paint.disconnect(self._on_paint)
        self._edited.pop(id(layer), None)
        self._boxes.pop(id(layer), None)
        self._pending.pop(id(layer), None)

    def edited_ids(self, layer: Labels | None) -> set[int]:
        """A copy of the ids edited in `layer` since it was watched."""
        return set(self._edited.get(id(layer), ())) if layer is not None else set()

    def edited_boxes(self, layer: Labels | None) -> list:
        """Bounding boxes (``((start, stop), ...)`` per axis) of the edits made in `layer`."""
        return list(self._boxes.get(id(layer), ())) if layer is not None else []

    def _on_paint(self, event: Any) -> None:
        layer = event.source
        self._edited.setdefault(id(layer), set()).update(ids_in_history_item(event.value))
        self._boxes.setdefault(id(layer), []).extend(boxes_in_history_item(event.value))
        self._pending[id(layer)] = layer
        self._timer.start()
        self.changed.emit(layer)

    def autosave_now(self) -> None:
        """Write the autosave of every layer edited since the last one (errors are shown)."""
        self._timer.stop()
        pending, self._pending = self._pending, {}
        for layer in pending.values():
            try:
                autosave_corrections(self._folder(), layer.name, np.asarray(layer.data))
            except CellsegError as exc:
                show_error(f"autosave failed: {exc}")
