"""The Segment tab's "Export model (bioimage.io)…" button: the chosen weights as a package.

The package is written by the core's
:func:`~napari_cellseg.models.bioimageio_export.iter_export_bioimageio` (what
``cellseg export-model W --to bioimageio`` runs) in a napari worker, its stages shown in a
status line; a Mask R-CNN is refused at once with the core's one line, before any dialog.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, Label, PushButton
from qtpy.QtWidgets import QSizePolicy

from napari_cellseg.errors import CellsegError

EXPORT_TEXT = "Export model (bioimage.io)…"
_FILTER = "bioimage.io model package (*.zip)"


class ExportFailed(Exception):
    """An unexpected error, re-raised as such (superqt silently drops a RuntimeError)."""


def default_package_path(weights: Path, folder: Path | None = None) -> Path:
    """``<stem>_bioimageio.zip`` beside the weights, or in ``folder`` (default: cwd) when
    their folder cannot be written (the bundled demo weights) or they are a package.

    >>> default_package_path(Path("/no/such/folder/cells.safetensors"), Path("/tmp")).as_posix()
    '/tmp/cells_bioimageio.zip'
    """
    from napari_cellseg.models.weights import weights_root

    root = weights_root(weights)
    stem = root.stem if root.suffix else root.name
    name = f"{stem.removesuffix('_bioimageio')}_bioimageio.zip"
    beside = root.parent
    if beside.is_dir() and os.access(beside, os.W_OK) and root.suffix != ".zip":
        return beside / name
    return (folder or Path.cwd()) / name


def ask_package_path(parent: Any, default: Path) -> Path | None:
    """A save dialog for the package; None when cancelled; ``.zip`` added when missing."""
    from qtpy.QtWidgets import QFileDialog

    title = "Export model as a bioimage.io package"
    name, _ = QFileDialog.getSaveFileName(parent, title, str(default), _FILTER)
    if not name:
        return None
    path = Path(name)
    return path if path.suffix.lower() == ".zip" else path.with_name(path.name + ".zip")


def export_job(weights: Path, out: Path) -> Generator[Any, None, Path]:
    """The core's export in a worker (GUI-friendly threads), unexpected errors in one line."""
    from napari_cellseg._napari._threads import gui_torch_threads
    from napari_cellseg.models.bioimageio_export import iter_export_bioimageio

    try:
        with gui_torch_threads():
            return (yield from iter_export_bioimageio(weights, out))
    except CellsegError:
        raise
    except Exception as exc:
        raise ExportFailed(f"unexpected {type(exc).__name__}: {exc}") from exc


class ModelExport:
    """The export button and its status line (hidden until an export starts)."""

    def __init__(
        self,
        weights: Callable[[], Path | None],
        card: Callable[[], Any],
        *,
        viewer: Any = None,
        parent: Any = None,
        report_error: Callable[[str], None] | None = None,
    ) -> None:
        self._weights, self._card = weights, card
        self._viewer, self._parent = viewer, parent
        self._report = report_error or _show_error
        self.button = PushButton(name="export_model", text=EXPORT_TEXT)
        self.button.tooltip = (
            "write the chosen U-Net weights as a bioimage.io model package (.zip: weights, "
            "test input and output, cover, README; validated offline), as "
            "cellseg export-model does"
        )
        self.status = Label(name="export_status", value="")
        self.status.native.setWordWrap(True)  # long paths must not widen the dock
        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.visible = False
        self.row = Container(
            name="model_export", label=" ", labels=False, widgets=[self.button, self.status]
        )
        self.row.margins = (0, 0, 0, 0)
        self.worker: Any = None
        self.written: Path | None = None
        self.button.clicked.connect(lambda _value=None: self.export())

    @property
    def running(self) -> bool:
        """Whether an export is under way."""
        return self.worker is not None

    def export(self, out: str | Path | None = None) -> Any:
        """Export the chosen weights to ``out`` (asked in a dialog when None); the worker.

        Returns ``None`` when nothing was started: no usable weights, a Mask R-CNN (its
        refusal is shown), the dialog cancelled, or an export already running.
        """
        if self.running:
            return None
        weights, card = self._weights(), self._card()
        if weights is None or card is None:
            self._report("choose a usable weight file first (see the Model box)")
            return None
        from napari_cellseg.models.bioimageio_export import export_refusal

        refusal = export_refusal(card, weights)
        if refusal is not None:
            self._report(refusal)
            return None
        if out is None:
            out = ask_package_path(self._parent, default_package_path(Path(weights)))
            if out is None:
                return None
        return self._start(Path(weights), Path(out))

    def _start(self, weights: Path, out: Path) -> Any:
        from napari.qt.threading import create_worker

        from napari_cellseg._napari._common import track_task

        worker = create_worker(export_job, weights, out, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(lambda event: self._show(getattr(event, "message", "")))
        worker.returned.connect(self._on_written)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker, self.written = worker, None
        self.button.enabled = False
        self._show(f"exporting {weights.name}…")
        if self._viewer is not None:
            track_task(self._viewer, worker, f"bioimage.io export of {weights.name}")
        worker.start()
        return worker

    def _show(self, message: str) -> None:
        self.status.value = message
        self.status.visible = True

    def _on_written(self, out: Path) -> None:
        self.written = Path(out)
        size = self.written.stat().st_size / 2**20
        self._show(f"written {self.written} ({size:.1f} MiB, a valid bioimage.io package)")

    def _on_error(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, CellsegError | ExportFailed) else repr(exc)
        self._show(f"not exported: {message}")
        self._report(message)

    def _on_finished(self) -> None:
        self.worker = None
        self.button.enabled = True


def _show_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)
