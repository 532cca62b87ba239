"""The "Segment" dock: image layer, weight file, device, tiling and thresholds; Run / Cancel.

The widget keeps all its state on the instance. Recently used weight files are kept in a JSON
file in the user's config directory (``NAPARI_CELLSEG_CONFIG_DIR`` overrides it, for tests).
The chosen weight file is shared with the viewer's other docks through its
:class:`~napari_cellseg._napari._session.Session`. Running, cancelling and re-applying
thresholds live in :mod:`._segment_run`; layer conversion in :mod:`._layers`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, TextEdit
from napari.layers import Image
from napari.utils.notifications import show_error

from napari_cellseg import models
from napari_cellseg._napari import _layers
from napari_cellseg._napari._channel_row import ChannelRow
from napari_cellseg._napari._common import CONFIG_ENV, WEIGHT_FILTER, SyncGuard, rebuild_choices
from napari_cellseg._napari._diameter_row import DiameterRow, physical_pixel_size
from napari_cellseg._napari._model_export import ModelExport
from napari_cellseg._napari._segment_options import SegmentOptions, build_request
from napari_cellseg._napari._segment_run import SegmentRun
from napari_cellseg._napari._session import session_for
from napari_cellseg.device import available_devices, resolve_device
from napari_cellseg.errors import CellsegError

log = logging.getLogger(__name__)

RECENT_FILE = "recent_weights.json"
CARD_MAX_HEIGHT = 180  # pixels: room for a full summary without filling the dock
NO_FILE_TEXT = "No weight file chosen: pick one above or from the recent list."


def config_dir() -> Path:
    """The directory for napari-cellseg's user settings (``$NAPARI_CELLSEG_CONFIG_DIR`` first)."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env).expanduser()
    try:
        from platformdirs import user_config_dir
    except ImportError:  # pragma: no cover - napari depends on platformdirs
        return Path.home() / ".config" / "napari-cellseg"
    return Path(user_config_dir("napari-cellseg", appauthor=False))


class RecentFiles:
    """Most-recently-used weight files, newest first, stored as a JSON list of paths."""

    def __init__(self, path: Path, limit: int = 10) -> None:
        self.path = path
        self.limit = limit

    def load(self) -> list[Path]:
        """Return the stored files that still exist; a missing or broken store gives ``[]``."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(raw, list):
            return []
        return [Path(p) for p in raw if isinstance(p, str) and Path(p).is_file()]

    def add(self, file: Path) -> None:
        """Put ``file`` first and save (atomically); a failed save is logged, not raised."""
        items = [file, *(p for p in self.load() if p != file)][: self.limit]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump([str(p) for p in items], fh, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not save the recent weight files to %s: %s", self.path, exc)


class SegmentWidget(Container):
    """Dock widget to segment an image layer with a weight file (U-Net or Mask R-CNN)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._syncing = SyncGuard()
        self._model_card: Any = None
        self._model_path: Path | None = None  # the file whose card and thresholds are shown
        self._recent = RecentFiles(config_dir() / RECENT_FILE)
        self._bundled = [p.resolve() for p in models.list_bundled_weights()]

        self._image = ComboBox(name="image_layer", label="Image", choices=self._image_choices)
        self._weights = FileEdit(
            name="weights", label="Weights", mode="r", filter=WEIGHT_FILTER, nullable=True
        )
        self._recent_box = ComboBox(
            name="recent", label="Recent", choices=self._recent_choices, nullable=True
        )
        self._device = ComboBox(
            name="device", label="Device", choices=available_devices(), value="auto"
        )
        self._device_info = Label(name="device_info", label=" ")
        self._card = TextEdit(name="card", label="Model", value=NO_FILE_TEXT)
        self._card.read_only = True
        self._card.native.setMaximumHeight(CARD_MAX_HEIGHT)
        self._model_export = ModelExport(
            lambda: self.weights_path, lambda: self._model_card, viewer=viewer,
            parent=self.native, report_error=self._report_error,
        )  # fmt: skip
        self._options = SegmentOptions()
        self._channels = ChannelRow()
        self._channels.image_layers = lambda: [layer for _, layer in self._image_choices()]
        self._diameter = DiameterRow(viewer)
        self._runner = SegmentRun(
            viewer, self._options, report_error=self._report_error, parent=self.native
        )
        self.extend(
            [self._image, self._weights, self._recent_box, self._device, self._device_info,
             self._card, self._model_export.row, *self._channels.widgets,
             *self._options.widgets[:2], *self._diameter.widgets, *self._options.widgets[2:],
             *self._runner.widgets]
        )  # fmt: skip
        self.native.layout().addStretch(1)  # keep the rows at the top of a tall dock
        self._options.set_family(None)

        self._weights.changed.connect(self._on_weights_changed)
        self._recent_box.changed.connect(self._on_recent_changed)
        self._device.changed.connect(self._on_device_changed)
        self._image.changed.connect(self._on_image_changed)
        self._runner.run_button.changed.connect(self.run)
        self._runner.on_prediction = self._diameter.show_result
        self._channels.on_change = self._on_channels_changed
        self._session.weights_changed.connect(self._on_session_weights)
        for signal in [
            *(w.changed for w in (*self._options.post_widgets, self._options.invert)),
            *self._diameter.changed,
        ]:
            signal.connect(self._share_params)
        self.native.destroyed.connect(self._runner.shutdown)
        layer_events = viewer.layers.events
        layer_events.inserted.connect(self._on_layer_inserted)
        layer_events.removed.connect(self._on_layer_removed)
        layer_events.reordered.connect(self._refresh_images)
        for layer in viewer.layers:
            layer.events.name.connect(self._refresh_images)

        self._on_device_changed(self._device.value)
        self._on_image_changed(self._image.value)
        start = [self._session.weights] if self._session.weights else []
        start = start or self._bundled or self._recent.load()
        if start:
            self._use(start[0], remember=False)

    # -- running ----------------------------------------------------------------------------
    def run(self, _value: Any = None) -> Any:
        """Segment the chosen image in a worker and return the worker (None if not started)."""
        if self._runner.running:
            return None
        try:
            request = build_request(
                self._viewer, self._options, image=self.selected_image,
                weights=self.weights_path, card=self._model_card, device=self._device.value,
                diameter=self._diameter, channels=self._channels,
            )  # fmt: skip
        except CellsegError as exc:
            self._runner.fail(str(exc))
            return None
        return self._runner.start(request)

    def cancel(self) -> None:
        """Stop the running segmentation at its next step; nothing is added."""
        self._runner.cancel()

    def _report_error(self, message: str) -> None:
        show_error(message)

    @property
    def running(self) -> bool:
        """Whether a segmentation is under way."""
        return self._runner.running

    @property
    def last_prediction(self) -> Any:
        """The latest :class:`~napari_cellseg.inference.planes.Prediction` (thresholds applied)."""
        return self._runner.prediction

    @property
    def run_button(self) -> PushButton:
        return self._runner.run_button

    @property
    def cancel_button(self) -> PushButton:
        return self._runner.cancel_button

    @property
    def diameter(self) -> DiameterRow:
        """The Object diameter row (mode, value, Measure)."""
        return self._diameter

    @property
    def channels(self) -> ChannelRow:
        """The Channels rows (channel axis, signal, helper, model inputs)."""
        return self._channels

    @property
    def model_export(self) -> ModelExport:
        """The "Export model (bioimage.io)…" button and its status line."""
        return self._model_export

    @property
    def runner(self) -> SegmentRun:
        """The run controller (worker, progress, re-applying thresholds)."""
        return self._runner

    # -- public read-only state ------------------------------------------------------------
    @property
    def selected_image(self) -> Image | None:
        """The chosen Image layer, or ``None``."""
        return self._image.value

    @property
    def weights_path(self) -> Path | None:
        """The chosen weight file when its model card could be read, else ``None``."""
        return self._weights.value if self._model_card is not None else None

    @property
    def model_card(self) -> Any:
        """The :class:`~napari_cellseg.models.ModelCard` of the chosen file, or ``None``."""
        return self._model_card

    # -- image layers -----------------------------------------------------------------------
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _refresh_images(self, _event: Any = None) -> None:
        rebuild_choices(self._image)
        self._channels.refresh()  # helper layers come and go

    def _on_layer_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self._refresh_images)
        self._refresh_images()

    def _on_layer_removed(self, event: Any) -> None:
        event.value.events.name.disconnect(self._refresh_images)
        self._refresh_images()

    def _on_image_changed(self, layer: Image | None) -> None:
        self._channels.set_layer(layer)
        self._diameter.set_pixel_size(physical_pixel_size(layer))
        self._on_channels_changed()

    def _on_channels_changed(self) -> None:
        """The layer or its channel axis changed: planes and stack options, shared choice."""
        try:
            stack = _layers.lead_count(self._channels.axes() or "") > 0
        except CellsegError:
            stack = False
        self._options.planes.enabled = self._options.joining.enabled = stack
        self._session.share_channels(self._channels.shared())
        self._share_params()

    def _share_params(self, _value: Any = None) -> None:
        """Tell the viewer's other docks (Batch, Evaluate) the thresholds and diameter."""
        card = self._model_card
        try:
            post = self._options.post_params(card.post_params()) if card is not None else None
            diameter = self._diameter.shared_spec()
        except CellsegError:
            return  # an invalid value: the others keep the last valid ones
        invert = bool(self._options.invert.value)
        self._session.share_params(post, diameter, getattr(card, "family", None), invert)

    # -- weight files -----------------------------------------------------------------------
    def _recent_choices(self, _widget: Any = None) -> list[tuple[str, Path]]:
        recent = self._recent.load()
        choices = [(f"{p.name}  ({p.parent})", p) for p in recent]
        choices += [(f"{p.name}  (demo)", p) for p in self._bundled if p not in recent]
        return choices

    def _on_weights_changed(self, value: Path | None) -> None:
        if not self._syncing.active:
            self._use(value, remember=True)

    def _on_recent_changed(self, value: Path | None) -> None:
        if not self._syncing.active and value is not None:
            self._use(value, remember=True)

    def _on_session_weights(self, value: Path | None) -> None:
        """Another dock (e.g. fine-tuning) chose new weights: show and use them."""
        if not self._syncing.active and value is not None and value != self._weights.value:
            self._use(value, remember=True)

    def _use(self, path: Path | None, *, remember: bool) -> None:
        """Show the card of ``path``, sync both pickers and remember a good file."""
        path = Path(path).expanduser().resolve() if path is not None else None
        with self._syncing:
            if self._weights.value != path:
                self._weights.value = path
            previous = self._model_path
            self._model_card = self._read_card(path)
            if _card_inverts(self._model_card) and self._options.invert.value:
                # e.g. fine-tuned with Invert on: its card flips the image now, not twice
                self._options.invert.value = False
            self._model_path = path if self._model_card is not None else None
            self._options.set_family(getattr(self._model_card, "family", None))
            if self._model_card is not None and path != previous:
                self._options.show_post(self._model_card.post_params())  # its own thresholds
            self._diameter.set_card(self._model_card)
            self._channels.set_card(self._model_card)
            if self._model_card is not None and path is not None:
                self._session.weights = path
                if remember:
                    self._recent.add(path)
            rebuild_choices(self._recent_box)
            known = [value for _, value in self._recent_choices()]
            self._recent_box.value = path if path in known else None
        self._share_params()

    def _read_card(self, path: Path | None) -> Any:
        if path is None or not path.is_file():
            self._card.value = NO_FILE_TEXT if path is None else f"Not a file: {path}"
            return None
        try:
            card = models.read_card(path)
        except CellsegError as exc:
            message = str(exc)
        except Exception as exc:  # a reader bug must not take the dock down
            message = f"{path}: could not read the model card ({type(exc).__name__}: {exc})"
        else:
            self._card.value = card.summary()
            return card
        self._card.value = f"⚠ This weight file cannot be used.\n\n{message}"
        show_error(message)
        return None

    # -- device -----------------------------------------------------------------------------
    def _on_device_changed(self, name: str | None) -> None:
        try:
            device = resolve_device(name or "auto")
        except Exception as exc:  # e.g. "cuda" chosen but not usable
            self._device_info.value = f"unavailable: {exc}"
            show_error(str(exc))
            return
        self._device_info.value = f"runs on: {device}"


def _card_inverts(card: Any) -> bool:
    """Whether a model card's normalisation flips the image (``None``: no model, no)."""
    return bool((getattr(card, "normalisation", None) or {}).get("invert", False))
