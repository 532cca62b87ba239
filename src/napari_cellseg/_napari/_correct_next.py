"""The Correct tab's "Correct next" part: images ranked by the model's doubt, doubtful objects.

"Rank folder…" scores every image of a folder in a worker (augmented copies compared,
:mod:`napari_cellseg.batch.ranking`), with progress and Cancel, and lists them most
doubtful first with score and reason; a double-click opens the image with the model's
labels. "Next doubtful object" centres the view on the next most doubtful object of the
chosen labels layer, selects it and says why (the objects are scored once per layer, in a
worker, unless the ranking already did).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog, QListWidget, QListWidgetItem

from napari_cellseg import models
from napari_cellseg._napari import _correct_helpers as helpers
from napari_cellseg._napari._channel_row import layer_channels
from napari_cellseg._napari._common import ThrottledProgress, track_task
from napari_cellseg._napari._layers import put_labels, result_name
from napari_cellseg._napari._threads import with_gui_threads
from napari_cellseg.errors import CellsegError
from napari_cellseg.labels import editing

MAX_SHOWN = 500
"""At most this many images are listed (the most doubtful ones)."""


def rank_job(paths: list[Path], weights: Path, params: Any) -> Generator[Any, None, Any]:
    """Rank ``paths`` with the model in ``weights`` (in the worker), keeping their labels."""
    from napari_cellseg.batch.ranking import iter_rank_images

    return (yield from with_gui_threads(iter_rank_images(paths, weights, params, keep_labels=True)))


def objects_job(
    data: Any, axes: str, labels: np.ndarray, weights: Path, params: Any
) -> Generator[Any, None, Any]:
    """The objects of ``labels`` over ``data``, most doubtful first (in the worker)."""

    from napari_cellseg.inference.uncertainty import iter_uncertainty

    work = iter_uncertainty(np.asarray(data), weights, replace(params, axes=axes), labels=labels)
    result = yield from with_gui_threads(work)
    return result.objects


def folder_images(folder: Path) -> list[Path]:
    """The images of ``folder`` (top level; label images cellseg wrote are left out)."""
    from napari_cellseg.batch.files import find_inputs

    _, found, _ = find_inputs(folder, folder / ".cellseg-none")
    return [path for path, _ in found]


def object_point(obj: Any, shape: tuple[int, ...]) -> tuple[float, ...]:
    """Data coordinates of an object's centre in labels of ``shape`` (its plane first).

    >>> from types import SimpleNamespace as S
    >>> object_point(S(plane=5, centroid=(3.0, 4.0)), (2, 3, 10, 10))
    (1.0, 2.0, 3.0, 4.0)
    """
    lead = np.unravel_index(obj.plane, shape[:-2]) if len(shape) > 2 else ()
    return (*(float(i) for i in lead), *obj.centroid)


class CorrectNextPanel(Container):
    """ "Correct next": a ranked list of images and a "Next doubtful object" button.

    Parameters
    ----------
    viewer : napari.Viewer
    session : Session
        Where the model (``session.weights``) and the Segment tab's thresholds come from.
    layers : callable
        Returns the Correct tab's chosen ``(labels layer, image layer)`` (either may be None).
    """

    def __init__(self, viewer: Any, session: Any, layers: Callable[[], tuple[Any, Any]]) -> None:
        super().__init__(labels=False)
        self._viewer, self._session, self._layers = viewer, session, layers
        self._worker: Any = None
        self.ranked: list[Any] = []
        #: Labels layer name -> its objects, most doubtful first, and the next one to show.
        self.objects: dict[str, tuple[list[Any], int]] = {}
        header = Label(value="<b>Correct next</b>")
        self.rank_button = PushButton(text="Rank folder…")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0)
        self.status = Label(value="rank a folder: its most doubtful images come first")
        self.status.native.setWordWrap(True)
        self.next_button = PushButton(text="Next doubtful object")
        self.object_info = Label(value="")
        self.object_info.native.setWordWrap(True)
        self.list = QListWidget()
        self.list.setToolTip("double-click: open the image with the model's labels")
        self.list.setMinimumHeight(120)
        self.extend([header, helpers.row(self.rank_button, self.cancel_button), self.progress])
        self.extend([self.status])
        self.native.layout().addWidget(self.list)
        self.extend([self.next_button, self.object_info])
        self._progress = ThrottledProgress(self.progress, self.status, self.native)
        self.rank_button.changed.connect(lambda _v=None: self.rank_folder())
        self.cancel_button.changed.connect(lambda _v=None: self.cancel())
        self.next_button.changed.connect(lambda _v=None: self.next_object())
        self.list.itemDoubleClicked.connect(lambda item: self.open_ranked(self.list.row(item)))

    # -- model ------------------------------------------------------------------------------
    def _model(self) -> tuple[Path, Any]:
        from napari_cellseg.params import PredictParams

        weights = self._session.weights
        if weights is None:
            raise CellsegError("choose a model in the Segment tab first (it ranks the images)")
        post = self._session.post_params
        return Path(weights), PredictParams(
            post=post, diameter=self._session.diameter, invert=self._session.invert
        )

    @property
    def running(self) -> bool:
        """Whether a ranking or scoring job runs."""
        return self._worker is not None

    # -- ranking a folder -------------------------------------------------------------------
    @helpers.reporting
    def rank_folder(self, folder: str | Path | None = None) -> None:
        """Rank the images of ``folder`` (asked for when None) in a worker."""
        if self.running:
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self.native, "Folder of images to rank")
            if not folder:
                return
        weights, params = self._model()
        paths = folder_images(Path(folder))
        self.status.value = f"ranking {len(paths)} image(s) of {Path(folder).name}…"
        self._launch(rank_job, (paths, weights, params), self._ranked, "ranking images")

    def _launch(self, job: Callable, args: tuple, done: Callable, what: str) -> None:
        worker = create_worker(job, *args, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(done)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(lambda: self._progress.record(None, None, "cancelled"))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.rank_button.enabled = self.next_button.enabled = False
        self.cancel_button.enabled = True
        self._progress.record(0, 1, None)
        self._progress.start()
        track_task(self._viewer, worker, what)
        worker.start()

    def _on_event(self, event: Any) -> None:
        from napari_cellseg.events import Notice, Progress

        if isinstance(event, Progress):
            self._progress.record(event.done, event.total, event.message or None)
        elif isinstance(event, Notice) and event.level == "warning":
            show_info(event.message)

    def _on_error(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, CellsegError) else f"{type(exc).__name__}: {exc}"
        self._progress.record(None, None, f"failed: {message}")
        show_error(message)

    def _on_finished(self) -> None:
        self._worker = None
        self._progress.stop()
        self.rank_button.enabled = self.next_button.enabled = True
        self.cancel_button.enabled = False

    def cancel(self) -> None:
        """Stop the running job at its next step."""
        if self._worker is not None:
            self.cancel_button.enabled = False
            self._progress.record(None, None, "cancelling…")
            self._worker.quit()

    def _ranked(self, ranked: list[Any]) -> None:
        self.ranked = ranked[:MAX_SHOWN]
        self.list.clear()
        for rank, image in enumerate(self.ranked, start=1):
            text = (
                f"{rank}. {image.path.name}  total doubt {image.total_doubt:.1f}  "
                f"({image.score:.2f})  {image.reason}"
            )
            item = QListWidgetItem(text)
            item.setToolTip(str(image.path))
            self.list.addItem(item)
        from napari_cellseg.batch.ranking import size_note

        note = size_note(ranked, self._session.diameter, "the Segment tab's Object diameter")
        done = f"ranked {len(ranked)} image(s): most to correct first"
        self._progress.record(1, 1, done + (f"; {note}" if note else ""))

    @helpers.reporting
    def open_ranked(self, index: int) -> Labels:
        """Open ranked image ``index`` with the model's labels; its objects come next."""
        from napari_cellseg.io.images import read_image

        ranked = self.ranked[index]
        image = read_image(ranked.path)
        name = ranked.path.stem
        layer = next((ly for ly in self._viewer.layers if ly.name == name), None)
        if not isinstance(layer, Image) or layer.data.shape != image.data.shape:
            layer = self._viewer.add_image(image.data, name=name, rgb=image.axes.endswith("S"))
        weights = self._session.weights
        title = result_name(name, f"doubt ({Path(weights).stem})" if weights else "doubt")
        labels = put_labels(self._viewer, title, ranked.labels, image=layer, metadata={})
        self.objects[labels.name] = (list(ranked.objects), 0)
        self._viewer.layers.selection.active = labels
        self.object_info.value = f"{ranked.path.name}: {ranked.reason}"
        return labels

    # -- objects of the current image -------------------------------------------------------
    @helpers.reporting
    def next_object(self) -> None:
        """Centre on the next most doubtful object of the chosen labels layer and select it."""
        if self.running:
            return
        labels, image = self._layers()
        if labels is None:
            raise CellsegError("no labels layer: segment an image or open a label image first")
        if labels.name in self.objects:
            self._show_next(labels)
            return
        if image is None:
            raise CellsegError("choose the image the labels belong to (Image, above)")
        weights, params = self._model()
        data = np.asarray(labels.data).copy()  # the user may paint while the worker reads
        # as the Segment tab segments it: the layer's channel choice (axis, signal, helper)
        chosen = layer_channels(image, [ly for ly in self._viewer.layers if isinstance(ly, Image)])
        card = weights.card if hasattr(weights, "card") else models.read_card(weights)
        params = replace(params, channels=chosen.channels(card))
        args = (chosen.data, chosen.axes, data, weights, params)
        self.status.value = f"scoring the objects of {labels.name}…"

        def scored(objects: list[Any]) -> None:
            self.objects[labels.name] = (objects, 0)
            self._progress.record(1, 1, f"scored {len(objects)} object(s) of {labels.name}")
            self._show_next(labels)

        self._launch(objects_job, args, scored, "scoring objects")

    def _show_next(self, labels: Labels) -> None:
        objects, start = self.objects[labels.name]
        data = np.asarray(labels.data)
        present = set(np.unique(data).tolist())
        for step in range(len(objects)):
            k = (start + step) % len(objects)
            obj = objects[k]
            if obj.label in present:
                self.objects[labels.name] = (objects, k + 1)
                helpers.centre_on(self._viewer, labels, object_point(obj, data.shape))
                what = f"object {obj.label}"
                if obj.label == 0:  # a candidate the model did not keep: paint it if real
                    labels.selected_label = editing.next_free_label(data)
                    what = f"no object (paint it as {labels.selected_label} if it is one)"
                else:
                    labels.selected_label = obj.label
                self.object_info.value = (
                    f"{what} ({k + 1}/{len(objects)}): {obj.reason}, doubt {obj.score:.2f}"
                )
                return
        self.object_info.value = "no object left to show"
