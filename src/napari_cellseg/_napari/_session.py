"""State shared by the widgets of one viewer: the current weights, predictions, training set.

One :class:`Session` per viewer (``session_for(viewer)``), never module-level state shared
by all viewers. Widgets connect to its psygnal signals, e.g. the fine-tune widget sets new
weights and the segment widget picks them up at once.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from psygnal import Signal


class Session:
    """What the Segment, Correct, Fine-tune and Evaluate widgets of one viewer share.

    Attributes
    ----------
    weights : Path or None
        The weight file segmentation uses now (``weights_changed`` fires on change).
    predictions : dict
        Labels layer name -> the core ``Prediction`` that made it (for re-applying
        thresholds, training-set provenance, evaluation).
    training_set : Path or None
        The folder corrected images are added to (``images/`` + ``masks/``).
    post_params : PostprocessParams or None
        The Segment tab's current thresholds (for ``weights``); ``None`` without a Segment tab.
    family : str or None
        The model family of those thresholds (which of them it uses).
    diameter : float, str or None
        The Segment tab's object diameter as ``PredictParams.diameter`` takes it (``"auto"``,
        ``"off"``, px, or ``"12um"``); ``None``: the model's default.
    invert : bool
        The Segment tab's Invert box (``PredictParams.invert``: the image flipped for the
        model, relative to its card); fine-tuning trains the same way.
    channels : dict or None
        The Segment tab's channel choice for its layer (``axes`` with ``C``, ``signal``,
        ``helper``; ``channels_changed`` fires); ``None``: a one-channel or colour image.
    """

    weights_changed = Signal(object)
    training_set_changed = Signal(object)
    prediction_added = Signal(str)
    params_changed = Signal()
    channels_changed = Signal()

    def __init__(self) -> None:
        self._weights: Path | None = None
        self._training_set: Path | None = None
        self.predictions: dict[str, Any] = {}
        self.post_params: Any = None
        self.diameter: float | str | None = None
        self.family: str | None = None  # the model family of ``post_params``
        self.invert = False
        self.channels: dict[str, Any] | None = None

    def share_channels(self, channels: dict[str, Any] | None) -> None:
        """The Segment tab's channel choice changed (``channels_changed`` fires)."""
        if channels != self.channels:
            self.channels = channels
            self.channels_changed.emit()

    def share_params(
        self,
        post_params: Any,
        diameter: float | str | None,
        family: str | None = None,
        invert: bool = False,
    ) -> None:
        """The Segment tab's thresholds, diameter or invert changed (``params_changed``)."""
        new = (post_params, diameter, family, invert)
        if new != (self.post_params, self.diameter, self.family, self.invert):
            self.post_params, self.diameter, self.family, self.invert = new
            self.params_changed.emit()

    @property
    def weights(self) -> Path | None:
        return self._weights

    @weights.setter
    def weights(self, value: str | Path | None) -> None:
        value = Path(value) if value else None
        if value != self._weights:
            self._weights = value
            self.weights_changed.emit(value)

    @property
    def training_set(self) -> Path | None:
        return self._training_set

    @training_set.setter
    def training_set(self, value: str | Path | None) -> None:
        value = Path(value) if value else None
        if value != self._training_set:
            self._training_set = value
            self.training_set_changed.emit(value)

    def add_prediction(self, layer_name: str, prediction: Any) -> None:
        """Remember the prediction behind a labels layer."""
        self.predictions[layer_name] = prediction
        self.prediction_added.emit(layer_name)


_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


def session_for(viewer: Any) -> Session:
    """The session of ``viewer`` (created on first use, dropped with the viewer)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        from napari_cellseg._napari._warmup import start_warmup

        start_warmup()  # the first run then finds torchvision, smp and pandas loaded
        session = _SESSIONS[viewer] = Session()
    return session
