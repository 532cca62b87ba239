"""The Segment tab's Channels rows: channel axis, signal and helper channel, model inputs.

``ChannelRow`` shows, for the chosen image layer, which axis holds channels (guessed by
:func:`._channels.guess_channel_axis`, overridable), which channel is the nucleus / cell
signal and which an optional helper (cytoplasm, membrane) — a channel of the layer or, for
channels opened as separate layers, another image layer of the same shape — and what the
model's inputs then receive (the card's ``input_channels`` / ``channel_handling``). The
choice is kept in the layer's metadata, so switching layers restores it. The mapping itself
is the core's ``PredictParams.channels`` (``--channels``): :meth:`ChannelRow.channels`
computes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Label, LineEdit, Widget
from napari.layers import Image

from napari_cellseg._napari import _channels, _layers
from napari_cellseg._napari._channels import ChannelChoice
from napari_cellseg._napari._layers import layer_data
from napari_cellseg.errors import CellsegError

ALL_CHANNELS = "all (as the model's card says)"


class ChannelRow:
    """Channel axis, signal and helper pickers and the model-input line of the Segment tab."""

    def __init__(self) -> None:
        self.axis = ComboBox(
            name="channel_axis", label="Channel axis", choices=[("none", None)],
            tooltip="the layer's axis that holds channels (guessed; 'none': one channel)",
        )  # fmt: skip
        self.signal = ComboBox(
            name="signal_channel", label="Signal", choices=[("c0", 0)],
            tooltip="the nucleus / cell channel the model segments",
        )  # fmt: skip
        self.helper = ComboBox(
            name="helper_channel", label="Helper", choices=[("none", None)],
            tooltip="optional cytoplasm / membrane channel, for models with several inputs",
        )  # fmt: skip
        self.inputs = Label(name="model_inputs", label="Model inputs", value="")
        self.inputs.native.setWordWrap(True)
        self._layer: Image | None = None
        self._card: Any = None
        self._loading = False
        #: The viewer's image layers (for a helper channel opened as a layer of its own).
        self.image_layers: Callable[[], list[Image]] = list
        #: Called after the user changed the choice (not when a layer or card is shown).
        self.on_change: Callable[[], None] | None = None
        _narrow(self.signal)
        self.axis.changed.connect(self._on_axis)
        self.signal.changed.connect(self._on_channel)
        self.helper.changed.connect(self._on_channel)
        self.set_layer(None)

    @property
    def widgets(self) -> list[Widget]:
        """The rows, in display order."""
        return [self.axis, self.signal, self.helper, self.inputs]

    # -- what the run uses ----------------------------------------------------------------
    def choice(self) -> ChannelChoice:
        """The choice the widgets show."""
        return ChannelChoice(self.axis.value, self.signal.value, self.helper.value)

    def axes(self) -> str | None:
        """Axis letters of the layer's data with the chosen channel axis (None: no layer)."""
        if self._layer is None:
            return None
        shape = layer_data(self._layer).shape
        return _channels.data_axes(shape, self.axis.value, rgb=bool(self._layer.rgb))

    def helper_layer(self) -> Image | None:
        """The image layer chosen as helper channel, or ``None`` (CellsegError: it is gone)."""
        name = self.helper.value
        if not isinstance(name, str) or self._layer is None:
            return None
        for layer in self._siblings():
            if layer.name == name:
                return layer
        raise CellsegError(
            f"helper layer {name!r} is gone or no longer has the shape of {self._layer.name!r}; "
            "choose another helper"
        )

    def channels(self, card: Any = None) -> tuple[int, ...] | None:
        """``PredictParams.channels`` for the chosen signal and helper (None: the card's way).

        With a helper layer, the run's data are the layer and the helper stacked (channels
        0 and 1, see :meth:`image_input`). Raises CellsegError (one line) when a channel is
        out of range for the layer.
        """
        card = card if card is not None else self._card
        if self._layer is None or _inputs(card) is None:
            return None
        n, handling = _inputs(card)
        if self.helper_layer() is not None:
            return _channels.model_channels(0, 1, n, handling)
        if self.axis.value is None:
            return None
        _channels.check_choice(self.choice(), layer_data(self._layer).shape, self._layer.name)
        return _channels.model_channels(self.signal.value, self.helper.value, n, handling)

    def image_input(self, viewer: Any, *, only_current: bool) -> _layers.ImageInput:
        """What the run segments: the layer (or its current plane), with a helper layer's
        data stacked behind it as a last channel axis when one is chosen."""
        if self._layer is None:
            raise CellsegError("choose an image layer to segment (add one to the viewer first)")
        axes = self.axes()
        source = _layers.image_input(self._layer, viewer, only_current=only_current, axes=axes)
        helper = self.helper_layer()
        if helper is None:
            return source
        other = _layers.image_input(helper, viewer, only_current=only_current, axes=axes)
        data = np.stack([np.asarray(source.data), np.asarray(other.data)], axis=-1)
        return replace(source, data=data, axes=source.axes + "C")

    def shared(self) -> dict[str, Any] | None:
        """The choice for the Batch dialog: data axes (with ``C``), signal and helper."""
        if self._layer is None or self.axis.value is None or isinstance(self.helper.value, str):
            return None
        try:
            axes = self.axes()
        except CellsegError:
            return None
        axes = axes if axes is not None and "C" in axes else None  # colour: each file's own
        return {"axes": axes, "signal": self.signal.value, "helper": self.helper.value}

    # -- showing a layer and a card -------------------------------------------------------
    def set_layer(self, layer: Image | None) -> None:
        """Show ``layer``'s channels: its stored choice, else a guess."""
        self._layer = layer
        shape = tuple(layer_data(layer).shape) if layer is not None else ()
        choice = layer_choice(layer) if layer is not None else ChannelChoice(None, 0, None)
        axis_choices: list[tuple[str, int | None]] = [("none", None)]
        axis_choices += [(f"axis {i} ({n})", i) for i, n in enumerate(shape[:-2] or ())]
        if len(shape) >= 3:  # channels last: the last axis
            axis_choices.append((f"axis {len(shape) - 1} ({shape[-1]}, last)", len(shape) - 1))
        self._loading = True
        try:
            _set_choices(self.axis, axis_choices)
            self.axis.value = choice.axis
            self._fill_channels(choice)
        finally:
            self._loading = False
        self._show_inputs()

    def refresh(self) -> None:
        """The viewer's layers changed: offer the helper layers there are now."""
        if self._layer is not None and not self._loading:
            self.set_layer(self._layer)

    def set_card(self, card: Any) -> None:
        """Show what the model's inputs get (``card`` None: no model chosen)."""
        self._card = card
        self._show_inputs()

    def _fill_channels(self, choice: ChannelChoice) -> None:
        n = self._n_channels(choice.axis)
        signal: list[tuple[str, int | None]] = [(f"c{i}", i) for i in range(n)]
        if choice.axis is not None:
            signal.insert(0, (ALL_CHANNELS, None))
        helpers: list[tuple[str, int | str | None]] = [("none", None)]
        if choice.axis is None:  # channels opened as separate layers of the same shape
            helpers += [(f"layer {ly.name!r}", ly.name) for ly in self._siblings()]
        else:
            helpers += [(f"c{i}", i) for i in range(n)]
        _set_choices(self.signal, signal)
        _set_choices(self.helper, helpers)
        keep = choice.signal in range(n) or (choice.signal is None and choice.axis is not None)
        self.signal.value = choice.signal if keep else 0
        known = [value for _, value in helpers]
        self.helper.value = choice.helper if choice.helper in known else None
        self.signal.enabled = choice.axis is not None
        self.helper.enabled = len(helpers) > 1

    def _siblings(self) -> list[Image]:
        """Other one-channel image layers with this layer's shape (possible helpers)."""
        layer = self._layer
        if layer is None or layer.rgb:
            return []
        shape = tuple(layer_data(layer).shape)
        return [
            other
            for other in self.image_layers()
            if other is not layer and not other.rgb and tuple(layer_data(other).shape) == shape
        ]

    def _n_channels(self, axis: int | None) -> int:
        if self._layer is None or axis is None:
            return 1
        return int(layer_data(self._layer).shape[axis])

    def _show_inputs(self) -> None:
        card = self._card
        if _inputs(card) is None:
            self.inputs.value = "choose a weight file to see the model's inputs"
            return
        n, handling = _inputs(card)
        self.helper.visible = n > 1
        try:
            channels = self.channels(card)
        except CellsegError as exc:
            self.inputs.value = f"⚠ {exc}"
            return
        names = None
        if isinstance(self.helper.value, str) and self._layer is not None:
            names = [self._layer.name, self.helper.value]
        self.inputs.value = _channels.describe_inputs(channels, n, handling, names)

    # -- user changes ---------------------------------------------------------------------
    def _on_axis(self, _value: Any = None) -> None:
        if self._loading:
            return
        self._loading = True
        try:
            self._fill_channels(ChannelChoice(self.axis.value, 0, None))
        finally:
            self._loading = False
        self._changed()

    def _on_channel(self, _value: Any = None) -> None:
        if not self._loading:
            self._changed()

    def _changed(self) -> None:
        if self._layer is not None:
            _channels.store_choice(self._layer.metadata, self.choice())
        self._show_inputs()
        if self.on_change is not None:
            self.on_change()


def layer_choice(layer: Image) -> ChannelChoice:
    """The layer's channel choice: kept in its metadata by the Segment tab, else the guess
    that tab shows for it (channel axis from shape and axis labels; signal c0, or all
    channels of a colour layer)."""
    shape = tuple(layer_data(layer).shape)
    choice = _channels.stored_choice(layer.metadata)
    if choice is None or (choice.axis is not None and choice.axis >= len(shape)):
        labels = getattr(layer, "axis_labels", None)
        axis = _channels.guess_channel_axis(shape, rgb=bool(layer.rgb), axis_labels=labels)
        choice = ChannelChoice(axis, None if layer.rgb else 0, None)
    return choice


def layer_data_axes(layer: Image) -> str:
    """Axis letters of the layer's data with the channel axis of :func:`layer_choice`."""
    shape = tuple(layer_data(layer).shape)
    return _channels.data_axes(shape, layer_choice(layer).axis, rgb=bool(layer.rgb))


@dataclass(frozen=True)
class LayerChannels:
    """An image layer's data and axes as its channel choice says, and the chosen channels.

    ``signal`` ``None``: every channel, as a model's card says (no channel axis, or "all").
    """

    data: Any
    axes: str
    signal: int | None = None
    helper: int | None = None

    def channels(self, card: Any) -> tuple[int, ...] | None:
        """``PredictParams.channels`` for a model with this ``card`` (as the Segment tab)."""
        inputs = _inputs(card)
        if self.signal is None or inputs is None:
            return None
        return _channels.model_channels(self.signal, self.helper, *inputs)


def layer_channels(layer: Image, layers: Sequence[Image] = ()) -> LayerChannels:
    """What the Segment tab would segment of ``layer`` (all its planes), for other tabs.

    The layer's channel choice (:func:`layer_choice`) gives its axes; a helper layer
    (named in the choice, looked up in ``layers``) is stacked behind it as channel 1. Raises
    CellsegError (one line) when the choice no longer fits the layer.
    """
    choice = layer_choice(layer)
    data = layer_data(layer)
    shape = tuple(int(n) for n in data.shape)
    axes = layer_data_axes(layer)
    if isinstance(choice.helper, str):
        helper = next(
            (other for other in layers if other is not layer and other.name == choice.helper
             and tuple(layer_data(other).shape) == shape),
            None,
        )  # fmt: skip
        if helper is None:
            raise CellsegError(
                f"helper layer {choice.helper!r} of {layer.name!r} is gone or no longer has "
                "its shape; choose another helper in the Segment tab"
            )
        stacked = np.stack([np.asarray(data), np.asarray(layer_data(helper))], axis=-1)
        return LayerChannels(stacked, axes + "C", 0, 1)
    _channels.check_choice(choice, shape, layer.name)
    if choice.axis is None:
        return LayerChannels(data, axes)
    helper_index = choice.helper if isinstance(choice.helper, int) else None
    return LayerChannels(data, axes, choice.signal, helper_index)


def _inputs(card: Any) -> tuple[int, str] | None:
    """The card's ``input_channels`` and ``channel_handling`` (None: no usable card)."""
    try:
        return int(card.input_channels), str(card.channel_handling)
    except (AttributeError, TypeError, ValueError):
        return None


def _set_choices(combo: ComboBox, choices: list[tuple[str, Any]]) -> None:
    """Replace ``combo``'s choices in this order (magicgui keeps old items first otherwise)."""
    with combo.changed.blocked():
        combo.native.clear()
        combo.choices = choices


BATCH_CHANNELS = 8
"""Channel numbers the Batch dialog offers (the files are not read before the run)."""


class BatchChannelRow:
    """The Batch dialog's channel rows: the files' axes, signal and helper channel.

    They follow the Segment tab's choice (shared through the session); the run gets
    ``PredictParams.axes`` (empty: each file's own) and ``PredictParams.channels`` (from
    the batch weights' card, as in the Segment tab), both part of the batch recipe.
    """

    def __init__(self) -> None:
        self.axes = LineEdit(name="file_axes", label="File axes", value="")
        self.axes.tooltip = (
            "axis letters of the files, as --axes (e.g. CYX for channels first); empty: "
            "each file's own"
        )
        self.signal = ComboBox(
            name="batch_signal", label="Signal",
            choices=[(ALL_CHANNELS, None), *((f"c{i}", i) for i in range(BATCH_CHANNELS))],
            tooltip="the nucleus / cell channel of every file",
        )  # fmt: skip
        self.helper = ComboBox(
            name="batch_helper", label="Helper",
            choices=[("none", None), *((f"c{i}", i) for i in range(BATCH_CHANNELS))],
            tooltip="optional cytoplasm / membrane channel, for models with several inputs",
        )  # fmt: skip

        _narrow(self.signal)  # "all (as the model's card says)" must not widen the dock

    @property
    def widgets(self) -> list[Widget]:
        """The rows, in display order."""
        return [self.axes, self.signal, self.helper]

    def follow(self, shared: dict[str, Any] | None) -> None:
        """Show the Segment tab's choice (``None``: a one-channel or colour image)."""
        shared = shared or {}
        self.axes.value = shared.get("axes") or ""
        self.signal.value = shared.get("signal")
        self.helper.value = shared.get("helper")

    def params_values(self, weights: Any) -> dict[str, Any]:
        """``axes`` and ``channels`` for ``PredictParams`` (CellsegError: a bad value)."""
        axes = str(self.axes.value).strip().upper() or None
        if axes is not None and (set(axes) - set("TZCYXS") or not {"Y", "X"} <= set(axes)):
            raise CellsegError(
                f"file axes {axes!r} are not axis letters: use T, Z, C, Y, X and S with both "
                "Y and X (e.g. CYX), or leave them empty"
            )
        if self.signal.value is None:
            return {"axes": axes, "channels": None}
        from napari_cellseg import models

        card = models.read_card(weights)
        channels = _channels.model_channels(
            self.signal.value, self.helper.value, card.input_channels, card.channel_handling
        )
        return {"axes": axes, "channels": channels}


def _narrow(combo: ComboBox, characters: int = 12) -> None:
    """Size ``combo`` for ``characters`` characters, not its longest item (shown elided)."""
    from qtpy.QtWidgets import QComboBox

    native = combo.native
    native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    native.setMinimumContentsLength(characters)
