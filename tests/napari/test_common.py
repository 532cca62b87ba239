"""The widgets' shared helpers."""

from __future__ import annotations

import warnings

from qtpy.QtCore import QObject, Signal

from napari_cellseg._napari._common import track_task


class _Worker(QObject):
    finished = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.quit_calls = 0

    def quit(self) -> None:
        self.quit_calls += 1


def test_track_task_registers_cancels_and_completes_without_warnings(
    make_napari_viewer_proxy,
) -> None:
    """Through the public-only proxy napari hands to plugin widgets (it warns on private use)."""
    viewer = make_napari_viewer_proxy()
    manager = viewer.__wrapped__.window._task_status_manager
    worker = _Worker()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        track_task(viewer, worker, "segmenting cells")
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], caught
    assert manager.is_busy() and any("segmenting cells" in s for s in manager.get_status())
    manager.cancel_all()  # what closing the viewer does
    assert worker.quit_calls == 1
    worker.finished.emit()
    assert not manager.is_busy()
