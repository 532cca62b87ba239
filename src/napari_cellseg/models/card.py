"""The model card: everything a weight file says about itself.

A native napari-cellseg weight file is one ``.safetensors`` file whose metadata key
``"cellseg.card"`` holds this card as JSON. Foreign files (a bare state dict) get a card
inferred from their keys and shapes, with the documented defaults below and
``provenance["source"]`` saying so.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from napari_cellseg.diameters import DIAMETER_RANGE as _DIAMETER_RANGE
from napari_cellseg.errors import CellsegError
from napari_cellseg.families import FAMILIES, family_part
from napari_cellseg.params import PostprocessParams

CARD_METADATA_KEY = "cellseg.card"
CARD_SCHEMA_VERSION = 1
CHANNEL_HANDLING = ("rgb", "grey", "channels")

#: Percentile normalisation: (x - p_low) / (p_high - p_low), per channel, then clipped.
DEFAULT_NORMALISATION: dict[str, Any] = {"method": "percentile", "low": 1.0, "high": 99.8}
#: The object diameter (px) assumed for a model whose card does not say (foreign weight
#: files, cards written before object sizes were recorded): 18 px is the median, over the
#: 519 images of DSB 2018 stage1_train, of each image's median equivalent diameter of its
#: nuclei (5th-95th percentile 9.6-49.6 px), the scale our first demo models were trained at.
DEFAULT_OBJECT_DIAMETER = 18.0
#: How ``object_diameter_source`` starts when training measured the diameter from its masks.
LEARNED_DIAMETER_SOURCE = "training masks"
#: Object diameters (px) a card or a user may give; outside this range is refused.
DIAMETER_RANGE = _DIAMETER_RANGE


class ModelCardError(CellsegError):
    """The card stored in a weight file is malformed."""


WEIGHT_LIBRARIES = ("napari-cellseg", "torch", "torchvision", "segmentation-models-pytorch")
"""The libraries that define the weights' meaning (recorded in every card)."""


def library_versions(
    names: Sequence[str] = WEIGHT_LIBRARIES, *, missing: str | None = None
) -> dict[str, str]:
    """Python's version and those of the installed packages ``names``.

    Parameters
    ----------
    names : sequence of str
        Distribution names; by default :data:`WEIGHT_LIBRARIES`, the libraries that define
        the weights' meaning (recorded in every card).
    missing : str, optional
        What to record for a package that is not installed; by default it is left out.

    Returns
    -------
    dict of str to str
        ``"python"`` and each package's version.
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if missing is not None:
                out[name] = missing
    return out


def default_outputs(family: str, builder_args: dict[str, Any]) -> tuple[list[str], str | None]:
    """What each output channel means, and its activation, by the family's conventions."""
    return family_part(family, "models").default_outputs(builder_args)


@dataclass
class ModelCard:
    """Describes a model: how to rebuild it, feed it, read its outputs and where it came from.

    Attributes
    ----------
    family : str
        ``"unet"`` or ``"maskrcnn"``.
    builder_args : dict
        Keyword arguments of the family's builder (``napari_cellseg.models.build_model``).
    input_channels : int
        Channels the network takes.
    channel_handling : str
        ``"rgb"``: grey images are replicated to 3 channels, alpha dropped;
        ``"grey"``: colour images are converted to luminance;
        ``"channels"``: the user maps image channels onto the input channels.
    normalisation : dict
        E.g. ``{"method": "percentile", "low": 1.0, "high": 99.8}``.
    outputs : list of str
        Meaning of each output channel (U-Net) or class (Mask R-CNN, index 0 = background).
    output_activation : str or None
        ``"softmax"``, ``"sigmoid"`` (U-Net) or ``None`` (Mask R-CNN).
    name, description : str
        Human-readable name and description.
    provenance : dict
        Training data manifest, epochs, metrics history, final metrics, source.
    postprocess : dict
        The post-processing values this model works best with (fields of
        :class:`~napari_cellseg.params.PostprocessParams`, e.g. tuned on labelled
        images by ``cellseg tune``); empty means the library defaults. Inference uses them
        whenever the user has not set thresholds.
    library_versions : dict
        Versions of python, torch, torchvision, smp and napari-cellseg at creation.
    created : str
        ISO 8601 creation time (UTC).
    object_diameter : float or None
        The typical object diameter in pixels the model was trained to see (training rescales
        every image so that its median equivalent diameter comes out near it); inference
        rescales images to it. ``None``: unknown (:data:`DEFAULT_OBJECT_DIAMETER` is assumed).
    object_diameter_source : str
        How ``object_diameter`` was measured (one line, shown by ``cellseg info``).
    lineage : list of dict
        The models this one was fine-tuned from, oldest first: each ancestor's ``name``,
        ``file`` and ``sha256`` (of its weight file), ``created``, a ``history`` summary
        (best epoch, epochs run, metrics, kept base) and its ``data_manifest``. Empty for a
        model trained from scratch (and in cards written before lineage was recorded).
    default_diameter : float or None
        The object diameter (px, at the images' own scale) a prediction assumes when the user
        gives none: fine-tuning sets it to the median object diameter of the corrected
        images (as Cellpose's ``diam_labels``), so that new images of the same kind are
        rescaled as the training images were. ``None``: ``auto`` (or no rescaling for a card
        without ``object_diameter``).
    """

    family: str
    builder_args: dict[str, Any]
    input_channels: int
    channel_handling: str = "rgb"
    normalisation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NORMALISATION))
    outputs: list[str] = field(default_factory=list)
    output_activation: str | None = None
    name: str = ""
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    schema_version: int = CARD_SCHEMA_VERSION
    object_diameter: float | None = None
    object_diameter_source: str = ""
    lineage: list[dict[str, Any]] = field(default_factory=list)
    default_diameter: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lineage, list) or not all(isinstance(a, dict) for a in self.lineage):
            raise ModelCardError("model card field 'lineage' is not a list of JSON objects")
        self.object_diameter = _checked_diameter("object_diameter", self.object_diameter)
        self.default_diameter = _checked_diameter("default_diameter", self.default_diameter)
        if not isinstance(self.family, str) or self.family not in FAMILIES:
            raise ModelCardError(
                f"unknown model family {self.family!r} in model card; expected one of "
                f"{', '.join(FAMILIES)}"
            )
        if self.channel_handling not in CHANNEL_HANDLING:
            raise ModelCardError(
                f"unknown channel handling {self.channel_handling!r}; expected one of "
                f"{', '.join(CHANNEL_HANDLING)}"
            )
        if not self.outputs:
            self.outputs, activation = default_outputs(self.family, self.builder_args)
            if self.output_activation is None:
                self.output_activation = activation
        if not self.name:
            self.name = f"{self.family}-{self.architecture}"
        self.post_params()  # a card with unknown or out-of-range thresholds is refused here
        self._check_normalisation()

    def reference_diameter(self) -> float:
        """The object diameter (px) this model works at: the card's, else the default.

        >>> ModelCard.for_model("unet", {"encoder_name": "resnet18"}).reference_diameter()
        18.0
        >>> ModelCard.for_model(
        ...     "unet", {"encoder_name": "resnet18"}, object_diameter=24
        ... ).reference_diameter()
        24.0
        """
        if self.object_diameter is None:
            return DEFAULT_OBJECT_DIAMETER
        return float(self.object_diameter)

    def learned_diameter(self) -> bool:
        """Whether ``object_diameter`` was measured from the model's own training masks.

        Such a model has seen its objects near that size, so it is surest of objects shown
        near it: ``diameter="auto"`` then also tries neighbouring scales
        (:func:`~napari_cellseg.inference.diameter.iter_refine_scale`). A diameter written
        into a card by hand, or the default for foreign weight files, is taken as given.

        >>> card = ModelCard.for_model("unet", {"encoder_name": "resnet18"}, object_diameter=24)
        >>> card.learned_diameter()
        False
        >>> card.object_diameter_source = "training masks: median equivalent diameter per image"
        >>> card.learned_diameter()
        True
        """
        return self.object_diameter is not None and self.object_diameter_source.startswith(
            LEARNED_DIAMETER_SOURCE
        )

    def learned_polarity(self) -> dict[str, int] | None:
        """How many training images were ``bright``, ``dark`` or ``unclear`` (as the data
        manifest records them, ``models/polarity.py``; a fine-tune that kept its base counts
        the base's); ``None`` when the card does not say."""
        provenance = self.provenance or {}
        if provenance.get("kept_base"):
            provenance = provenance.get("base_provenance") or {}
        counts = {"bright": 0, "dark": 0, "unclear": 0}
        for entry in provenance.get("data_manifest") or []:
            if entry.get("role", "train") == "train" and entry.get("polarity") in counts:
                counts[entry["polarity"]] += 1
        return counts if sum(counts.values()) else None

    def _check_normalisation(self) -> None:
        """Refuse a normalisation every prediction would fail on (at load, not per image)."""
        from napari_cellseg.models.normalise import normalise

        if not isinstance(self.normalisation, dict):
            raise ModelCardError("model card field 'normalisation' is not a JSON object")
        probe = np.linspace(0.0, 1.0, 16, dtype=np.float32).reshape(1, 4, 4)
        probe = np.repeat(probe, max(1, int(self.input_channels)), axis=0)
        try:
            normalise(probe, self.normalisation)
        except CellsegError as error:
            raise ModelCardError(f"model card normalisation is invalid: {error}") from None

    def post_params(self, base: PostprocessParams | None = None) -> PostprocessParams:
        """``base`` (or the library defaults) with this model's own post-processing values.

        Raises
        ------
        ModelCardError
            If the card names a value that is not a post-processing parameter, or one out of
            range.
        """
        if not isinstance(self.postprocess, dict):
            raise ModelCardError("model card field 'postprocess' is not a JSON object")
        known = {f.name: f for f in fields(PostprocessParams)}
        unknown = sorted(set(self.postprocess) - set(known))
        if unknown:
            raise ModelCardError(
                f"model card sets unknown post-processing values {', '.join(unknown)}; "
                f"known ones are {', '.join(known)}"
            )
        values = {}
        for name, value in self.postprocess.items():
            kind = type(getattr(PostprocessParams(), name))
            if isinstance(value, bool) is not (kind is bool) or not isinstance(value, (int, float)):
                raise ModelCardError(
                    f"model card post-processing value {name}={value!r} must be "
                    + ("true or false" if kind is bool else "a number")
                )
            values[name] = kind(value)
        try:
            return replace(base or PostprocessParams(), **values)
        except CellsegError as error:
            raise ModelCardError(f"model card post-processing values: {error}") from None

    @classmethod
    def for_model(cls, family: str, builder_args: dict[str, Any], **kwargs: Any) -> ModelCard:
        """A card for a freshly built model, with input channels taken from the builder."""
        known = isinstance(family, str) and family in FAMILIES  # else refused by __init__
        input_channels = family_part(family, "models").input_channels(builder_args) if known else 3
        kwargs.setdefault(
            "channel_handling",
            "rgb" if input_channels == 3 else ("grey" if input_channels == 1 else "channels"),
        )
        return cls(
            family=family, builder_args=dict(builder_args), input_channels=input_channels, **kwargs
        )

    @property
    def architecture(self) -> str:
        """Short architecture name, e.g. ``resnet34`` or ``resnet50-v1``."""
        return family_part(self.family, "models").architecture(self.builder_args)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON-compatible data."""
        return _jsonable(asdict(self))

    def to_json(self) -> str:
        """The card as a JSON string (what goes into the safetensors metadata)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Rebuild a card; unknown keys from newer versions are kept in ``provenance``."""
        if not isinstance(data, dict):
            raise ModelCardError("model card is not a JSON object")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("family", "builder_args", "input_channels") if k not in data]
        if missing:
            raise ModelCardError(f"model card lacks {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if extra:
            kwargs.setdefault("provenance", {})
            kwargs["provenance"] = {**kwargs["provenance"], "unknown_card_fields": extra}
        if kwargs.get("schema_version", 1) > CARD_SCHEMA_VERSION:
            kwargs.setdefault("provenance", {})["newer_card_schema"] = kwargs["schema_version"]
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a card from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelCardError(f"model card is not valid JSON ({error.msg})") from None
        return cls.from_dict(data)

    # -- display -------------------------------------------------------------------------
    def summary(self) -> str:
        """A few human-readable lines: family, architecture, inputs, outputs, training
        (:func:`~napari_cellseg.models.card_text.card_summary`)."""
        from napari_cellseg.models.card_text import card_summary

        return card_summary(self)


def _checked_diameter(name: str, value: Any) -> float | None:
    """``value`` as a float in :data:`DIAMETER_RANGE` (``None`` kept); else ModelCardError.

    >>> _checked_diameter("default_diameter", 150), _checked_diameter("x", None)
    (150.0, None)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelCardError(f"model card {name} must be a number, got {value!r}")
    lo, hi = DIAMETER_RANGE
    if not lo <= value <= hi:
        raise ModelCardError(f"model card {name} must be between {lo:g} and {hi:g} px, got {value}")
    return float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
