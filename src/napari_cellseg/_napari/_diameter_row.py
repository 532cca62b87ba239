"""The "Object diameter" row of the Segment tab and the Batch dialog: mode, value, measuring.

Modes: ``auto`` (estimated from the image), ``value`` (typed or measured) and ``off`` (no
rescaling); the default follows the model, as ``PredictParams(diameter=None)`` would: the
value of a fine-tuned card's ``default_diameter``, ``auto`` for a card that records its
``object_diameter``, else ``off``.

Units: the value is in µm when the image layer has a physical scale (napari ``layer.scale``
of its last two axes other than 1, as set from the file's pixel size), else in px. For a run
on that layer it is turned into pixels with that scale; elsewhere (the Batch dialog) it is
passed as ``"12um"`` and each file's own pixel size converts it.

"Measure" sets the value to the median equivalent diameter of the objects of a Labels layer,
or of the shapes drawn in a Shapes layer (each ellipse or polygon rasterised as one object).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton
from qtpy.QtWidgets import QComboBox

from napari_cellseg.diameters import DIAMETER_RANGE, parse_diameter
from napari_cellseg.errors import CellsegError
from napari_cellseg.labels.sizes import median_diameter
from napari_cellseg.params import PredictParams, field_info

MODES = ("auto", "value", "off")
DEFAULT_MODE = "model default"
"""The Batch dialog's extra mode: ``PredictParams(diameter=None)``, each model's default."""
DEFAULT_VALUE = 30.0


def physical_pixel_size(layer: Any) -> tuple[float, float] | None:
    """The ``(y, x)`` pixel size of an image layer with a physical scale, else ``None``."""
    if layer is None:
        return None
    scale = tuple(float(s) for s in getattr(layer, "scale", ())[-2:])
    if len(scale) != 2 or all(math.isclose(s, 1.0) for s in scale):
        return None
    return scale  # type: ignore[return-value]


def _mean_size(pixel_size: tuple[float, float]) -> float:
    return math.sqrt(pixel_size[0] * pixel_size[1])


def shapes_labels(layer: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The shapes of a Shapes layer as a 2-D labels image (one label per shape)."""
    if len(layer.data) == 0:
        raise CellsegError(f"{layer.name}: draw an ellipse or polygon around a few objects first")
    if shape is None:
        corners = np.concatenate([np.asarray(d)[:, -2:] for d in layer.data])
        shape = tuple(math.ceil(v) + 2 for v in corners.max(axis=0))
    labels = np.asarray(layer.to_labels(labels_shape=tuple(shape)))
    return labels.reshape(labels.shape[-2:]) if labels.ndim > 2 else labels


def measure_layer(layer: Any, viewer: Any = None, shape: tuple[int, int] | None = None) -> float:
    """The median object diameter (px) in a Labels layer (the plane shown) or a Shapes layer."""
    from napari.layers import Labels, Shapes

    if isinstance(layer, Shapes):
        labels = shapes_labels(layer, shape)
    elif isinstance(layer, Labels):
        data = layer.data
        if data.ndim > 2:
            step = viewer.dims.current_step if viewer is not None else (0,) * data.ndim
            data = data[tuple(int(s) for s in step[-data.ndim : -2])]
        labels = np.asarray(data)
    else:
        raise CellsegError("choose a Labels or Shapes layer to measure objects in")
    diameter = median_diameter(labels)
    if diameter is None:
        raise CellsegError(f"{layer.name}: no objects to measure")
    return diameter


class DiameterRow:
    """Mode, value (px or µm), "Measure" from a layer, and the estimate of the last run."""

    def __init__(
        self, viewer: Any = None, *, measure: bool = True, allow_default: bool = False
    ) -> None:
        self._viewer = viewer
        self._touched = False  # the user chose a mode: a new model no longer resets it
        self._pixel_size: tuple[float, float] | None = None
        tooltip = field_info(PredictParams, "diameter").widget_options()["tooltip"]
        modes = (DEFAULT_MODE, *MODES) if allow_default else MODES
        self.mode = ComboBox(name="diameter_mode", choices=modes, value=modes[-1], tooltip=tooltip)
        if allow_default:
            self.mode.value = DEFAULT_MODE
        # a narrow dock must not be widened by the longest choice ("model default")
        self.mode.native.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.mode.native.setMinimumContentsLength(5)
        hi = DIAMETER_RANGE[1]
        self.value = FloatSpinBox(
            name="diameter_value", value=DEFAULT_VALUE, min=0.01, max=hi, step=1.0,
            tooltip=tooltip, enabled=False,
        )  # fmt: skip
        self.unit = Label(name="diameter_unit", value="px")
        self.container = Container(
            name="diameter", label=field_info(PredictParams, "diameter").label,
            layout="horizontal", labels=False, widgets=[self.mode, self.value, self.unit],
        )  # fmt: skip
        self.container.margins = (0, 0, 0, 0)
        self.container.tooltip = tooltip
        self.estimate = Label(name="diameter_estimate", label=" ", value="", visible=False)
        self.source = ComboBox(
            name="measure_source", choices=self._source_choices, nullable=True,
            tooltip="a Labels layer (its objects) or a Shapes layer (ellipses or polygons "
            "drawn around a few objects)",
        )  # fmt: skip
        self.measure_button = PushButton(name="measure", text="Measure from labels")
        self.measure_button.tooltip = "set the value to the median diameter of these objects"
        self.measure_row = Container(
            name="measure_row", label="Measure", layout="horizontal", labels=False,
            widgets=[self.source, self.measure_button], visible=measure,
        )  # fmt: skip
        self.measure_row.margins = (0, 0, 0, 0)
        self.mode.changed.connect(self._on_mode)
        self.measure_button.changed.connect(self._on_measure_clicked)
        if viewer is not None and measure:
            events = viewer.layers.events
            for signal in (events.inserted, events.removed, events.reordered):
                signal.connect(self._refresh_sources)

    @property
    def widgets(self) -> list[Any]:
        """The row's widgets in display order."""
        return [self.container, self.estimate, self.measure_row]

    @property
    def changed(self) -> list[Any]:
        """The signals that fire when the diameter changes."""
        return [self.mode.changed, self.value.changed]

    # -- model and image --------------------------------------------------------------------
    def set_card(self, card: Any) -> None:
        """Follow ``card``'s default until the user chooses a mode: the value of its
        ``default_diameter`` (a fine-tune: its corrected images' object size), else auto when
        it records its object size, else off."""
        if card is None or self._touched:
            return
        default = getattr(card, "default_diameter", None)
        with self.mode.changed.blocked():
            if default is not None:
                self.mode.value = "value"
                self.set_px(float(default))
            else:
                self.mode.value = "auto" if getattr(card, "object_diameter", None) else "off"
        self._on_mode(self.mode.value, user=False)
        if default is not None:
            self._say(f"model default: the objects it was fine-tuned on, {default:.0f} px")

    def set_pixel_size(self, pixel_size: tuple[float, float] | None) -> None:
        """Show the value in µm (``pixel_size`` in µm) or in px (``None``), converting it."""
        if pixel_size == self._pixel_size:
            return
        px = self._to_px(float(self.value.value))
        self._pixel_size = pixel_size
        self.unit.value = "µm" if pixel_size else "px"
        self.set_px(px)

    def _to_px(self, value: float) -> float:
        return value / _mean_size(self._pixel_size) if self._pixel_size else value

    def set_px(self, px: float) -> None:
        """Set the value from pixels (shown in the row's unit)."""
        shown = px * _mean_size(self._pixel_size) if self._pixel_size else px
        self.value.value = round(shown, 2)

    def set_spec(self, spec: Any) -> None:
        """Show a ``PredictParams.diameter`` value (e.g. the Segment tab's, in the Batch dialog)."""
        if spec is None:
            if DEFAULT_MODE in self.mode.choices:
                self.mode.value = DEFAULT_MODE
            return
        if spec in ("auto", "off"):
            self.mode.value = spec
            return
        self.mode.value = "value"
        if isinstance(spec, str):  # "12um"
            self.set_pixel_size((1.0, 1.0))
            self.value.value = float(spec.removesuffix("um"))
        else:
            self.set_pixel_size(None)
            self.value.value = float(spec)

    # -- values -----------------------------------------------------------------------------
    def _on_mode(self, mode: str, *, user: bool = True) -> None:
        self._touched = self._touched or user
        self.value.enabled = mode == "value"
        self._say("")

    def _say(self, text: str) -> None:
        """Show ``text`` under the row (a Label emits no change when set from code, so its
        visibility is set here); ``""`` hides the line."""
        self.estimate.value = text
        self.estimate.visible = bool(text)

    def spec(self) -> float | str | None:
        """The diameter as ``PredictParams.diameter`` takes it: ``"12um"`` for µm."""
        mode = self.mode.value
        if mode == DEFAULT_MODE:
            return None
        if mode != "value":
            return mode
        value = float(self.value.value)
        return f"{value:g}um" if self._pixel_size else parse_diameter(value)  # type: ignore

    def shared_spec(self) -> float | str | None:
        """:meth:`spec` once the user chose a mode; ``None`` (each model's default) before."""
        return self.spec() if self._touched else None

    def params_value(self) -> float | str | None:
        """The diameter for a run on the current image (µm turned into px with its scale)."""
        return parse_diameter(self.spec(), self._pixel_size)  # type: ignore[return-value]

    def show_result(self, prediction: Any) -> None:
        """After an auto run: "auto — estimated 41 px (×0.44)"."""
        diameter = getattr(prediction, "diameter", None)
        if diameter is None:
            self._say("no rescaling")
            return
        what = "estimated" if self.mode.value == "auto" else "used"
        scale = getattr(prediction, "scale", 1.0)
        self._say(f"{self.mode.value} — {what} {diameter:.0f} px (×{scale:.2f})")

    # -- measuring --------------------------------------------------------------------------
    def _source_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Labels, Shapes

        if self._viewer is None:
            return []
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Labels | Shapes)]

    def _refresh_sources(self, _event: Any = None) -> None:
        self.source.reset_choices()

    def _on_measure_clicked(self, _value: Any = None) -> None:
        try:
            self.measure()
        except CellsegError as exc:
            from napari.utils.notifications import show_error

            self._say(f"⚠ {exc}")
            show_error(str(exc))

    def measure(self, _value: Any = None, shape: tuple[int, int] | None = None) -> float:
        """Measure the chosen layer's objects, switch to "value" and show it; returns px."""
        layer = self.source.value
        if layer is None:
            raise CellsegError("choose a Labels or Shapes layer to measure objects in")
        px = measure_layer(layer, self._viewer, shape)
        self.mode.value = "value"
        self.set_px(px)
        self._say(f"measured {px:.1f} px in {layer.name}")
        return px
