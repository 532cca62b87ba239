"""Channel choice of an image layer: its channel axis, the signal and helper channels.

Pure functions (no Qt) behind the Segment tab's Channels row (:mod:`._channel_row`):
guessing which axis of a layer holds channels, the axis letters of its data with that axis,
and turning "signal + optional helper channel" into the image channels the model's inputs
take, i.e. the core's ``PredictParams.channels`` (the CLI's ``--channels``), which
:func:`napari_cellseg.models.normalise.map_channels` then applies. The choice is kept per
layer in ``layer.metadata["cellseg"]["channels"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from napari_cellseg.errors import CellsegError

METADATA_KEY = "cellseg"
"""The layer.metadata key under which napari-cellseg keeps its per-layer settings."""
MAX_CHANNELS = 5
"""A leading dimension at most this long (under larger Y and X) is guessed to hold channels."""
CHANNEL_LABELS = ("c", "ch", "channel", "channels")
"""Axis labels (napari's ``layer.axis_labels``, any case) that name a channel axis."""
LEAD_AXES = "TZ"


@dataclass(frozen=True)
class ChannelChoice:
    """Which axis of a layer holds channels and which channels the model gets.

    Attributes
    ----------
    axis : int or None
        The channel axis of the layer's data; ``None``: a one-channel image (or stack).
    signal : int or None
        The nucleus / cell signal channel; ``None``: all channels, as the model card's
        channel handling says (a colour image).
    helper : int, str or None
        An optional second channel (cytoplasm, membrane) for models with several inputs: a
        channel of the layer, or the name of another image layer of the same shape (channels
        opened as separate layers).
    """

    axis: int | None = None
    signal: int | None = 0
    helper: int | str | None = None

    def to_dict(self) -> dict[str, int | str | None]:
        """Plain values for ``layer.metadata``."""
        return {"axis": self.axis, "signal": self.signal, "helper": self.helper}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelChoice:
        """Inverse of :meth:`to_dict` (unknown keys ignored, bad values raise CellsegError).

        >>> ChannelChoice.from_dict({"axis": 0, "signal": 1})
        ChannelChoice(axis=0, signal=1, helper=None)
        >>> ChannelChoice.from_dict({"axis": None, "signal": 0, "helper": "cytoplasm"}).helper
        'cytoplasm'
        """
        try:
            values = [None if data.get(k) is None else int(data[k]) for k in _KEYS[:2]]
            helper = data.get("helper")
            helper = helper if helper is None or isinstance(helper, str) else int(helper)
            return cls(*values, helper)
        except (TypeError, ValueError) as exc:
            raise CellsegError(f"unreadable channel choice {dict(data)!r}: {exc}") from exc


_KEYS = ("axis", "signal", "helper")


def guess_channel_axis(
    shape: Sequence[int], *, rgb: bool = False, axis_labels: Sequence[str] | None = None
) -> int | None:
    """The axis of a layer's data that most likely holds channels, or ``None``.

    In order: the last axis of an RGB(A) layer; an axis labelled ``c`` / ``channel``;
    a last axis of at most 4 under larger Y and X (channels last); the third-last axis
    (``CYX``, ``ZCYX``), then the first, when at most :data:`MAX_CHANNELS` long while Y and X
    are larger. The user overrides a wrong guess in the Channels row.

    Examples
    --------
    >>> guess_channel_axis((2, 256, 256)), guess_channel_axis((30, 256, 256))
    (0, None)
    >>> guess_channel_axis((256, 256, 3), rgb=True), guess_channel_axis((10, 2, 64, 64))
    (2, 1)
    >>> guess_channel_axis((3, 64, 64), axis_labels=("z", "y", "x")) is None
    True
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim < 3:
        return None
    if rgb:
        return ndim - 1
    labels = [str(a).strip().lower() for a in axis_labels or ()]
    if len(labels) == ndim:
        named = [i for i, a in enumerate(labels) if a in CHANNEL_LABELS]
        if named:
            return named[0]
        if any(a in ("t", "z", "time", "depth") for a in labels[:-2]):
            return None  # the leading axes are named, and none is a channel axis
    side = min(shape[-3], shape[-2])
    if shape[-1] <= 4 < side:
        return ndim - 1
    side = min(shape[-2:])
    for axis in dict.fromkeys((ndim - 3, 0)):
        if shape[axis] <= MAX_CHANNELS < side:
            return axis
    return None


def data_axes(shape: Sequence[int], axis: int | None, *, rgb: bool = False) -> str:
    """Axis letters of a layer's data whose channel axis is ``axis``.

    The channel axis is ``C`` (``S`` for the last axis of an RGB layer); the last two other
    axes are ``Y`` and ``X``; up to two more are ``Z`` or ``TZ``.

    Examples
    --------
    >>> data_axes((2, 64, 64), 0), data_axes((5, 2, 64, 64), 1), data_axes((64, 64, 3), 2)
    ('CYX', 'ZCYX', 'YXC')
    >>> data_axes((64, 64, 3), 2, rgb=True), data_axes((4, 64, 64), None)
    ('YXS', 'ZYX')
    >>> data_axes((64, 64, 4), None, rgb=True)  # an RGB(A) layer's colour axis stays colour
    'YXS'
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if rgb and axis is None:  # napari's RGB layers always hold colour on their last axis
        axis = ndim - 1
    if axis is not None and not 0 <= axis < ndim:
        raise CellsegError(
            f"channel axis {axis} is out of range: the image has {ndim} axes (0 to {ndim - 1}); "
            "choose another channel axis"
        )
    n_rest = ndim - (axis is not None)
    if n_rest < 2 or n_rest > 2 + len(LEAD_AXES):
        raise CellsegError(
            f"an image of shape {shape} with channel axis {axis} has {n_rest} other axes; the "
            "Segment dock takes 2-D images, z-stacks and time-lapses (at most T, Z, Y, X)"
        )
    rest = LEAD_AXES[len(LEAD_AXES) - (n_rest - 2) :] + "YX"
    letters = list(rest)
    if axis is not None:
        letters.insert(axis, "S" if rgb and axis == ndim - 1 else "C")
    return "".join(letters)


def model_channels(
    signal: int | None, helper: int | None, input_channels: int, channel_handling: str
) -> tuple[int, ...] | None:
    """The image channels fed, in order, to the model's inputs (``PredictParams.channels``).

    A one-input model gets the signal; a model with several inputs gets the signal, then the
    helper (when chosen), and the signal again in the inputs left: a grey-trained RGB model
    without helper sees the signal repeated, as a grey image would be. ``signal`` ``None``
    gives ``None``: all channels, as the card's ``channel_handling`` says.

    Examples
    --------
    >>> model_channels(1, None, 3, "rgb"), model_channels(1, 0, 3, "rgb")
    ((1, 1, 1), (1, 0, 1))
    >>> model_channels(1, 0, 1, "grey"), model_channels(0, 1, 2, "channels")
    ((1,), (0, 1))
    >>> model_channels(None, None, 3, "rgb") is None
    True
    """
    if signal is None:
        return None
    n = max(1, int(input_channels))
    if helper is None or n == 1:
        return (int(signal),) * n
    return (int(signal), int(helper)) + (int(signal),) * (n - 2)


def check_choice(choice: ChannelChoice, shape: Sequence[int], name: str) -> None:
    """Raise a one-line CellsegError when ``choice`` does not fit an image of ``shape``.

    >>> check_choice(ChannelChoice(0, 2), (2, 64, 64), "cells")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: layer 'cells': signal channel 2 is out of range: ...
    """
    shape = tuple(int(s) for s in shape)
    if choice.axis is None:
        if choice.signal not in (None, 0) or isinstance(choice.helper, int):
            raise CellsegError(
                f"layer {name!r} has no channel axis, so it has only channel 0; choose its "
                "channel axis first (Channels row)"
            )
        return
    data_axes(shape, choice.axis)  # axis in range, the rest an image
    n = shape[choice.axis]
    for role, index in (("signal", choice.signal), ("helper", choice.helper)):
        if isinstance(index, int) and not 0 <= index < n:
            raise CellsegError(
                f"layer {name!r}: {role} channel {index} is out of range: axis {choice.axis} "
                f"has {n} channel{'s' * (n != 1)} (0 to {n - 1}); choose another {role} channel"
            )


def stored_choice(metadata: Mapping[str, Any]) -> ChannelChoice | None:
    """The channel choice kept in a layer's metadata, or ``None`` (none, or unreadable).

    >>> stored_choice({"cellseg": {"channels": {"axis": 0, "signal": 1, "helper": 0}}})
    ChannelChoice(axis=0, signal=1, helper=0)
    >>> stored_choice({}) is None
    True
    """
    data = (metadata.get(METADATA_KEY) or {}).get("channels")
    if not isinstance(data, Mapping):
        return None
    try:
        return ChannelChoice.from_dict(data)
    except CellsegError:
        return None


def store_choice(metadata: dict[str, Any], choice: ChannelChoice) -> None:
    """Keep ``choice`` in a layer's metadata (other napari-cellseg settings kept).

    >>> meta = {}
    >>> store_choice(meta, ChannelChoice(0, 1)); meta
    {'cellseg': {'channels': {'axis': 0, 'signal': 1, 'helper': None}}}
    """
    own = dict(metadata.get(METADATA_KEY) or {})
    own["channels"] = choice.to_dict()
    metadata[METADATA_KEY] = own


def describe_inputs(
    channels: tuple[int, ...] | None,
    input_channels: int,
    channel_handling: str,
    names: Sequence[str] | None = None,
) -> str:
    """One line for the dock: what the model's inputs receive.

    ``names``: what to call the channels (default ``c0``, ``c1``…); named channels (layers)
    have no ``--channels`` equivalent.

    >>> describe_inputs((1, 0, 1), 3, "rgb")
    'c1, c0, c1 → 3 inputs (rgb), as --channels 1,0,1'
    >>> describe_inputs(None, 1, "grey")
    'all channels → 1 input (grey)'
    >>> describe_inputs((0, 1), 2, "channels", names=["nuclei", "cyto"])
    'nuclei, cyto → 2 inputs (channels)'
    """
    model = f"{input_channels} input{'s' * (input_channels != 1)} ({channel_handling})"
    if channels is None:
        return f"all channels → {model}"
    if names is not None:
        return f"{', '.join(names[c] for c in channels)} → {model}"
    given = ", ".join(f"c{c}" for c in channels)
    return f"{given} → {model}, as --channels {','.join(map(str, channels))}"
